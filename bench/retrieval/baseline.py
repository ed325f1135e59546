"""The baseline to beat: plain BM25 over the raw events, no generation, no passages.

Issue #12 measured it on other transcripts: SQLite FTS5 (``porter`` tokenizer, ``bm25()``
with its defaults) over one document per event, the text of its payload (prompt, tool
input and output, assistant message), asked the question's words joined by ``OR``. Here
it runs on the evaluation's own transcripts and questions, scored like the pipeline: a
hit is the answer, ignoring case, in a document of the top five (a whole event, so the
baseline is never cut short by an excerpt).

    python -m bench.retrieval.run --baseline
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from bench.retrieval.run import (
    MRR_DEPTH,
    TRANSCRIPTS_DIR,
    Metrics,
    Outcome,
    Question,
    sessions_of,
)

# Words a question is made of but that say nothing about its answer (FTS5 has no stop
# list; without one "what did we" would rank by "we").
STOP_WORDS = frozenset(
    "a after an and are as at before by did do does for from how in is it of on or that "
    "the this to was we were what when where which who why with".split()
)


def _payload_text(value: object, lines: list[str]) -> None:
    if isinstance(value, str):
        if value.strip():
            lines.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _payload_text(item, lines)
    elif isinstance(value, list | tuple):
        for item in value:
            _payload_text(item, lines)


def fts_query(question: str) -> str:
    """The question's words, quoted and joined by OR (FTS5 query syntax)."""
    words = [w for w in re.findall(r"\w+", question.casefold()) if w not in STOP_WORDS]
    return " OR ".join(f'"{w}"' for w in words)


def evaluate(
    questions: Sequence[Question], *, transcripts_dir: Path = TRANSCRIPTS_DIR
) -> tuple[Metrics, tuple[Outcome, ...]]:
    """Plain BM25 over each transcript's raw events, one in-memory FTS5 table each."""
    from claude_mem_http.client.transcript_import import parse_transcript

    outcomes: list[Outcome] = []
    for session in sessions_of(questions):
        transcript = parse_transcript(transcripts_dir / session)
        db = sqlite3.connect(":memory:")
        try:
            db.execute("CREATE VIRTUAL TABLE events USING fts5(body, tokenize='porter')")
            for event in transcript.events:
                lines: list[str] = []
                _payload_text(event.payload, lines)
                db.execute("INSERT INTO events (body) VALUES (?)", ("\n".join(lines),))
            for item in (q for q in questions if q.session == session):
                query = fts_query(item.question)
                rows = (
                    db.execute(
                        "SELECT body FROM events WHERE events MATCH ? "
                        "ORDER BY bm25(events) LIMIT ?",
                        (query, MRR_DEPTH),
                    ).fetchall()
                    if query
                    else []
                )
                answer = item.answer.casefold()
                rank = next(
                    (n for n, (body,) in enumerate(rows, 1) if answer in body.casefold()), None
                )
                outcomes.append(Outcome(question=item, rank=rank, results=len(rows), top_titles=()))
        finally:
            db.close()
    return Metrics.of(outcomes), tuple(outcomes)

"""Does search find the answer? Public Claude Code transcripts, frozen questions, hit@k.

    python -m bench.retrieval.run [--db sqlite|postgres] [--postgres-url URL] [--limit N]
                                  [--slice N] [--baseline] [--json] [--show-misses]

Each transcript under ``transcripts/`` (sources in ``transcripts/SOURCES.md``) is imported
the way ``claude-mem import claude-code`` imports one: its lines are parsed and mapped by
:func:`claude_mem_http.client.transcript_import.parse_transcript` and replayed through
:func:`~claude_mem_http.client.transcript_import.replay` into the embedded memory, one project per
transcript. Generation then runs in this process with the offline provider (no API key is
read or needed) until no job is left.

Every question of ``questions.jsonl`` is asked of its transcript's project with
``Memory.search``. A result is a hit when the question's ``answer`` (a short string found
verbatim in the session) appears, ignoring case, in what search returned for it: the
observation's content, title, subtitle, narrative, facts, concepts and file lists, plus any
excerpt or snippet the result carries. Nothing else is read to decide a hit. The marks an
excerpt puts around matching words (``**`` before and after) are presentation and are
taken out first: a reader sees ``--max-line-length=120`` in ``--**max-line-length**=120``.

Scores, per transcript and overall: hit@1, hit@5 and MRR (the reciprocal rank of the first
hit within the top ten, zero when there is none).

The questions were written from the transcripts before any search result was seen and are
frozen: change the engine, never the questions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from attrs import frozen

HERE = Path(__file__).resolve().parent
QUESTIONS_PATH = HERE / "questions.jsonl"
TRANSCRIPTS_DIR = HERE / "transcripts"

DEFAULT_LIMIT = 10  # results asked of search per question
MRR_DEPTH = 10  # a first hit below this rank counts as no hit
DRAIN_STEP = 200  # jobs per drain call, between progress lines
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
POSTGRES_URL_ENV = "CLAUDE_MEM_TEST_POSTGRES_URL"

# Where a search result may carry text: fields of the observation, and excerpt-like
# attributes that a result (or a wrapper around the observation) may grow.
OBSERVATION_FIELDS = (
    "content",
    "title",
    "subtitle",
    "narrative",
    "facts",
    "concepts",
    "files_read",
    "files_modified",
)
EXCERPT_FIELDS = ("excerpt", "excerpts", "snippet", "snippets")

# Provider keys unset by the command line entry, so nothing can reach a hosted model.
PROVIDER_ENV_KEYS = (
    "ANTHROPIC_API_KEY",
    "CLAUDE_MEM_ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "CLAUDE_MEM_OPENAI_API_KEY",
    "OPENROUTER_API_KEY",
    "CLAUDE_MEM_OPENROUTER_API_KEY",
    "GEMINI_API_KEY",
    "CLAUDE_MEM_GEMINI_API_KEY",
    "OLLAMA_API_KEY",
    "CLAUDE_MEM_OPENAI_COMPATIBLE_API_KEY",
    "CLAUDE_MEM_SERVER_PROVIDER",
)


# -- questions ------------------------------------------------------------------------------


@frozen
class Question:
    id: str
    session: str  # file name of the transcript under TRANSCRIPTS_DIR
    question: str
    answer: str


def load_questions(
    path: Path = QUESTIONS_PATH, *, per_session: int | None = None
) -> list[Question]:
    """The questions in file order; ``per_session`` keeps the first N of each transcript."""
    questions: list[Question] = []
    taken: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            raw = json.loads(line)
            try:
                item = Question(
                    id=str(raw["id"]),
                    session=str(raw["session"]),
                    question=str(raw["question"]),
                    answer=str(raw["answer"]),
                )
            except KeyError as exc:
                raise ValueError(f"{path}:{number}: missing field {exc}") from None
            if not item.answer.strip():
                raise ValueError(f"{path}:{number}: empty answer")
            if per_session is not None and taken.get(item.session, 0) >= per_session:
                continue
            taken[item.session] = taken.get(item.session, 0) + 1
            questions.append(item)
    return questions


def sessions_of(questions: Iterable[Question]) -> list[str]:
    """Transcript names in the order they first appear."""
    return list(dict.fromkeys(q.session for q in questions))


# -- scoring --------------------------------------------------------------------------------


def _strings(value: Any) -> Iterable[str]:
    if value is None:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, Iterable) and not isinstance(value, bytes | bytearray):
        for item in value:
            yield from _strings(item)


def hit_text(hit: Any) -> str:
    """Everything a search result shows: the observation's text fields and any excerpt.

    ``hit`` is an observation, or a wrapper holding one in ``.observation`` (the wrapper's
    own fields, e.g. an excerpt, count too)."""
    sources: list[Any] = [hit]
    inner = getattr(hit, "observation", None)
    if inner is not None and inner is not hit:
        sources.append(inner)
    parts: list[str] = []
    for source in sources:
        for name in OBSERVATION_FIELDS:
            parts.extend(_strings(getattr(source, name, None)))
        for name in EXCERPT_FIELDS:
            parts.extend(_unmarked(s) for s in _strings(getattr(source, name, None)))
    return "\n".join(parts)


def _unmarked(text: str) -> str:
    from claude_mem_core.domain.excerpts import MARK_CLOSE, MARK_OPEN

    return text.replace(MARK_OPEN, "").replace(MARK_CLOSE, "")


def title_of(hit: Any) -> str:
    inner = getattr(hit, "observation", None) or hit
    for name in ("title", "subtitle", "content"):
        value = getattr(inner, name, None)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())[:100]
    return "(untitled)"


def rank_of(answer: str, hits: Sequence[Any]) -> int | None:
    """1-based rank of the first result showing ``answer`` (ignoring case), else None."""
    wanted = answer.casefold()
    for rank, hit in enumerate(hits, 1):
        if wanted in hit_text(hit).casefold():
            return rank
    return None


@frozen
class Outcome:
    question: Question
    rank: int | None  # of the first hit among the results, None when none showed the answer
    results: int
    top_titles: tuple[str, ...]


@frozen
class Metrics:
    questions: int
    hit_at_1: float
    hit_at_5: float
    mrr: float

    @classmethod
    def of(cls, outcomes: Sequence[Outcome]) -> Metrics:
        n = len(outcomes)
        if n == 0:
            return cls(questions=0, hit_at_1=0.0, hit_at_5=0.0, mrr=0.0)
        ranks = [o.rank for o in outcomes]
        return cls(
            questions=n,
            hit_at_1=sum(1 for r in ranks if r is not None and r <= 1) / n,
            hit_at_5=sum(1 for r in ranks if r is not None and r <= 5) / n,
            mrr=sum(1.0 / r for r in ranks if r is not None and r <= MRR_DEPTH) / n,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "hit@1": round(self.hit_at_1, 4),
            "hit@5": round(self.hit_at_5, 4),
            "mrr@10": round(self.mrr, 4),
        }


@frozen
class Report:
    db: str
    limit: int
    outcomes: tuple[Outcome, ...]
    sessions: tuple[tuple[str, Metrics], ...]
    overall: Metrics
    imported: tuple[tuple[str, int], ...]  # transcript -> events replayed
    jobs: int  # generation jobs processed
    timings: tuple[tuple[str, float], ...]  # phase -> seconds

    def session_metrics(self, session: str) -> Metrics:
        return dict(self.sessions)[session]

    def as_dict(self) -> dict[str, Any]:
        return {
            "db": self.db,
            "limit": self.limit,
            "overall": self.overall.as_dict(),
            "sessions": {name: m.as_dict() for name, m in self.sessions},
            "imported_events": dict(self.imported),
            "generation_jobs": self.jobs,
            "seconds": {phase: round(s, 2) for phase, s in self.timings},
            "questions": [
                {
                    "id": o.question.id,
                    "session": o.question.session,
                    "question": o.question.question,
                    "answer": o.question.answer,
                    "rank": o.rank,
                    "results": o.results,
                    "top_titles": list(o.top_titles),
                }
                for o in self.outcomes
            ],
        }


# -- databases ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def sqlite_database() -> AsyncIterator[str]:
    """A fresh SQLite file in a temporary directory (migrated when the memory opens)."""
    directory = Path(tempfile.mkdtemp(prefix="cm_eval_"))
    try:
        yield f"sqlite+aiosqlite:///{directory / 'eval.db'}"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _with_database(url: str, database: str, *, driver: str | None = None) -> str:
    from sqlalchemy.engine import make_url

    from claude_mem_core.adapters import normalize_database_url

    parsed = make_url(normalize_database_url(url)).set(database=database)
    if driver is not None:
        parsed = parsed.set(drivername=driver)
    return parsed.render_as_string(hide_password=False)


async def _admin_execute(server_url: str, sql: str) -> None:
    import psycopg

    # CREATE/DROP DATABASE cannot run inside a transaction block.
    conn = await psycopg.AsyncConnection.connect(
        _with_database(server_url, "postgres", driver="postgresql"),
        autocommit=True,
        connect_timeout=5,
    )
    try:
        await conn.execute(sql.encode())
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def postgres_database(server_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database ``cm_eval_<random>`` on the server; dropped afterwards."""
    from claude_mem_core import migrations

    name = f"cm_eval_{secrets.token_hex(6)}"
    await _admin_execute(server_url, f'CREATE DATABASE "{name}"')
    try:
        url = _with_database(server_url, name)
        await migrations.upgrade(url)
        yield url
    finally:
        await _admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- import, generation, questions ----------------------------------------------------------


async def import_transcript(backend: Any, path: Path, *, out: TextIO) -> tuple[Any, int]:
    """Replay one transcript as ``claude-mem import claude-code`` does, into a project named
    after the file. Returns the project's scope and the number of events replayed."""
    from claude_mem_core import Scope
    from claude_mem_http.client.transcript_import import Progress, parse_transcript, replay

    transcript = parse_transcript(path)
    project = path.stem
    progress = Progress(len(transcript.events) + 1, out, label=f"importing {path.name}")
    await replay(transcript, backend, project=project, progress=progress)
    progress.finish()
    project_id = await backend.project(project)
    return Scope(team_id=backend.caller.team_id, project_id=project_id), len(transcript.events)


async def generate(memory: Any, *, out: TextIO) -> int:
    """Drain every queued generation job in this process, reporting as it goes."""
    started = time.monotonic()
    total = 0
    while True:
        handled = int(await memory.drain(max_jobs=DRAIN_STEP))
        if handled == 0:
            break
        total += handled
        out.write(f"\rgenerating observations: {total} jobs ({time.monotonic() - started:.0f}s)")
        out.flush()
    out.write(f"\rgenerating observations: {total} jobs in {time.monotonic() - started:.1f}s\n")
    out.flush()
    return total


async def evaluate(
    url: str,
    questions: Sequence[Question],
    *,
    db: str,
    limit: int = DEFAULT_LIMIT,
    transcripts_dir: Path = TRANSCRIPTS_DIR,
    out: TextIO = sys.stderr,
) -> Report:
    """Import the questions' transcripts into the memory at ``url``, generate, ask, score."""
    from claude_mem_core import PipelineOptions, open_memory
    from claude_mem_http.client.backends import LocalBackend

    if limit < 1:
        raise ValueError("limit must be at least 1")
    timings: list[tuple[str, float]] = []
    imported: list[tuple[str, int]] = []
    outcomes: list[Outcome] = []
    async with open_memory(url, provider="offline", env={}, options=PipelineOptions()) as memory:
        backend = await LocalBackend.embedded(memory, default_project=None)
        scopes: dict[str, Any] = {}
        started = time.monotonic()
        for session in sessions_of(questions):
            scope, events = await import_transcript(backend, transcripts_dir / session, out=out)
            scopes[session] = scope
            imported.append((session, events))
        timings.append(("import", time.monotonic() - started))

        started = time.monotonic()
        jobs = await generate(memory, out=out)
        timings.append(("generate", time.monotonic() - started))

        started = time.monotonic()
        for item in questions:
            hits = await memory.search(scopes[item.session], item.question, limit=limit)
            rank = rank_of(item.answer, hits[:MRR_DEPTH])
            if rank is None and len(hits) > MRR_DEPTH:
                deeper = rank_of(item.answer, hits[MRR_DEPTH:])
                rank = None if deeper is None else deeper + MRR_DEPTH
            outcomes.append(
                Outcome(
                    question=item,
                    rank=rank,
                    results=len(hits),
                    top_titles=tuple(title_of(h) for h in hits[:3]),
                )
            )
        timings.append(("search", time.monotonic() - started))

    per_session = tuple(
        (name, Metrics.of([o for o in outcomes if o.question.session == name]))
        for name in sessions_of(questions)
    )
    return Report(
        db=db,
        limit=limit,
        outcomes=tuple(outcomes),
        sessions=per_session,
        overall=Metrics.of(outcomes),
        imported=tuple(imported),
        jobs=jobs,
        timings=tuple(timings),
    )


async def run(
    *,
    db: str = "sqlite",
    postgres_url: str | None = None,
    limit: int = DEFAULT_LIMIT,
    per_session: int | None = None,
    questions_path: Path = QUESTIONS_PATH,
    transcripts_dir: Path = TRANSCRIPTS_DIR,
    out: TextIO = sys.stderr,
) -> Report:
    """The whole evaluation on a fresh database of kind ``db`` (``sqlite`` or ``postgres``)."""
    questions = load_questions(questions_path, per_session=per_session)
    if db == "sqlite":
        database = sqlite_database()
    elif db == "postgres":
        server = postgres_url or os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL
        database = postgres_database(server)
    else:
        raise ValueError(f"unknown database kind {db!r} (sqlite or postgres)")
    async with database as url:
        return await evaluate(
            url, questions, db=db, limit=limit, transcripts_dir=transcripts_dir, out=out
        )


# -- output ---------------------------------------------------------------------------------


def format_report(report: Report, *, show_misses: bool = False) -> str:
    width = max([len("overall"), *(len(name) for name, _ in report.sessions)])
    lines = [
        f"retrieval eval on {report.db}: {report.overall.questions} questions, "
        f"search limit {report.limit}, {report.jobs} generation jobs",
        "",
        f"{'session':<{width}}  {'n':>3}  {'hit@1':>6}  {'hit@5':>6}  {'MRR@10':>6}",
    ]
    rows = [*report.sessions, ("overall", report.overall)]
    for index, (name, m) in enumerate(rows):
        if index == len(rows) - 1:
            lines.append("-" * (width + 31))
        lines.append(
            f"{name:<{width}}  {m.questions:>3}  {m.hit_at_1:>6.3f}  {m.hit_at_5:>6.3f}"
            f"  {m.mrr:>6.3f}"
        )
    lines.append("")
    lines.append(
        "seconds: " + ", ".join(f"{phase} {seconds:.1f}" for phase, seconds in report.timings)
    )
    if show_misses:
        misses = [o for o in report.outcomes if o.rank is None or o.rank > 5]
        lines.append("")
        lines.append(f"misses (no hit in the top 5): {len(misses)}")
        for o in misses:
            where = "not in results" if o.rank is None else f"first hit at rank {o.rank}"
            lines.append(f"  {o.question.id}  {o.question.question}")
            lines.append(f"      answer: {o.question.answer!r} ({where}, {o.results} results)")
            for position, title in enumerate(o.top_titles, 1):
                lines.append(f"      {position}. {title}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.retrieval.run",
        description="Retrieval evaluation on public Claude Code transcripts.",
    )
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        help=f"server to create a throwaway database on (default ${POSTGRES_URL_ENV} or "
        f"{DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help="results asked of search per question"
    )
    parser.add_argument(
        "--slice", type=int, metavar="N", help="only the first N questions of each transcript"
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also score plain BM25 over the raw events (SQLite FTS5), the figure to beat",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--show-misses", action="store_true", help="list the questions without a top-5 hit"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.limit < 1:
        raise SystemExit("--limit must be at least 1")
    if args.slice is not None and args.slice < 1:
        raise SystemExit("--slice must be at least 1")
    for key in PROVIDER_ENV_KEYS:
        os.environ.pop(key, None)
    report = asyncio.run(
        run(
            db=args.db,
            postgres_url=args.postgres_url,
            limit=args.limit,
            per_session=args.slice,
        )
    )
    baseline: Metrics | None = None
    if args.baseline:
        from bench.retrieval import baseline as plain

        baseline, _ = plain.evaluate(load_questions(per_session=args.slice))
    if args.json:
        document = report.as_dict()
        if baseline is not None:
            document["baseline_plain_bm25"] = baseline.as_dict()
        print(json.dumps(document, indent=2))
    else:
        print(format_report(report, show_misses=args.show_misses))
        if baseline is not None:
            print(
                f"\nplain BM25 over the raw events (SQLite FTS5, no generation): "
                f"hit@1 {baseline.hit_at_1:.3f}  hit@5 {baseline.hit_at_5:.3f}  "
                f"MRR@10 {baseline.mrr:.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What search indexes: passages of bounded size, each linked to one observation.

Search returns observations (generated or written by hand), but the words that answer a
question are often only in the events an observation was made from: the full command, the
changed lines, the error at the end of an output. So every observation is indexed twice over:

* its own **observation passage**: the title, the identifying facts (files, concepts, type)
  and the content, each a field with its own weight (:data:`FIELD_WEIGHTS`);
* **event passages**: the text of each event it was generated from (prompt, tool input, tool
  output, assistant message), after privacy stripping (payloads are stored stripped), cut
  into passages of at most :data:`MAX_PASSAGE_CHARS` on line boundaries, with one line of
  overlap, so a hit can show the lines around the answer and a long output cannot win by
  size.

A passage carries its term frequencies (weighted by field) and its length in terms; the
backends store those and rank with :mod:`claude_mem_core.domain.ranking`.
"""

from __future__ import annotations

import enum
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from attrs import field, frozen

from claude_mem_core.domain.models import AgentEvent, Observation, ObservationKind
from claude_mem_core.domain.tokens import index_terms

# Field weights (BM25F: a term's frequency counts this many times in the field). A title
# says what an observation is about; files, concepts and facts identify it; the content is
# the story; raw event text is evidence.
FIELD_WEIGHTS: Mapping[str, float] = {"title": 3.0, "facts": 2.0, "body": 1.0, "raw": 1.0}

# A passage is about a paragraph: long enough to hold an answer with its context, short
# enough that its length says something and an excerpt of it is readable.
MAX_PASSAGE_CHARS = 1_200
# A line longer than this is cut at whitespace into pieces (minified files, long outputs).
MAX_LINE_CHARS = MAX_PASSAGE_CHARS
# The text of one event that is indexed. Beyond it (a whole file read, a build log) the rest
# is dropped: the observation and the first 64 kB hold what identifies the action.
MAX_EVENT_CHARS = 64_000
# A line carried over must be short, or overlap would double long passages.
MAX_OVERLAP_CHARS = 200


class Origin(enum.StrEnum):
    OBSERVATION = "observation"
    EVENT = "event"


@frozen(kw_only=True)
class Passage:
    """One indexed passage. ``text`` is what an excerpt is cut from: ``None`` for an
    observation passage (its excerpt comes from the observation itself)."""

    team_id: str
    project_id: str
    observation_id: str
    origin: Origin
    event_id: str | None = None
    ordinal: int = 0
    text: str | None = None
    tf: Mapping[str, float] = field(factory=dict)
    length: int = 0

    @property
    def terms(self) -> list[str]:
        """The distinct terms, sorted (a stored passage is the same whatever the order
        its words came in)."""
        return sorted(self.tf)


def weighted_frequencies(fields: Iterable[tuple[str, str]]) -> tuple[dict[str, float], int]:
    """Weighted term frequencies and length (in terms, unweighted) of ``(field, text)``."""
    tf: dict[str, float] = {}
    length = 0
    for name, text in fields:
        if not text:
            continue
        weight = FIELD_WEIGHTS[name]
        terms = index_terms(text)
        length += len(terms)
        for term, count in Counter(terms).items():
            tf[term] = tf.get(term, 0.0) + weight * count
    return tf, length


def observation_fields(observation: Observation) -> list[tuple[str, str]]:
    facts = [
        *observation.files_modified,
        *observation.files_read,
        *observation.concepts,
        *([observation.type] if observation.type else []),
    ]
    return [
        # The subtitle is the agent's own label for the step (Bash's description): it names
        # the action as a title does.
        ("title", "\n".join(filter(None, (observation.title, observation.subtitle)))),
        ("facts", "\n".join(facts)),
        ("body", observation.content),
    ]


def observation_passage(observation: Observation) -> Passage:
    tf, length = weighted_frequencies(observation_fields(observation))
    return Passage(
        team_id=observation.team_id,
        project_id=observation.project_id,
        observation_id=observation.id,
        origin=Origin.OBSERVATION,
        tf=tf,
        length=length,
    )


def event_text(event: AgentEvent) -> str:
    """The words of an event: its payload's text values, labelled by key where short."""
    lines: list[str] = []
    _flatten(event.payload, "", lines)
    text = "\n".join(lines)
    return text[:MAX_EVENT_CHARS]


# Keys whose values say nothing a question would ask about.
_SKIPPED_KEYS = frozenset(
    {"platformSource", "agentId", "agentType", "tool_use_id", "session_id", "transcript_path"}
)


def _flatten(value: Any, key: str, lines: list[str]) -> None:
    if key in _SKIPPED_KEYS:
        return
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return
        if key and "\n" not in text and len(text) <= 200:
            lines.append(f"{key}: {text}")
        else:
            lines.append(text)
    elif isinstance(value, Mapping):
        for name, item in value.items():
            _flatten(item, str(name), lines)
    elif isinstance(value, list | tuple):
        for item in value:
            _flatten(item, key, lines)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float) and key:
        lines.append(f"{key}: {json.dumps(value)}")


def _pieces(line: str) -> Iterator[str]:
    """A line, cut at whitespace into pieces of at most MAX_LINE_CHARS."""
    while len(line) > MAX_LINE_CHARS:
        cut = line.rfind(" ", MAX_LINE_CHARS // 2, MAX_LINE_CHARS)
        if cut <= 0:
            cut = MAX_LINE_CHARS
        yield line[:cut]
        line = line[cut:].lstrip()
    if line.strip():
        yield line


def chunk(text: str) -> list[str]:
    """``text`` cut into passages of at most MAX_PASSAGE_CHARS on line boundaries. A short
    last line of a passage starts the next one too (when both fit), so an answer that
    spans the cut is found whole. Linear in ``len(text)``."""
    passages: list[str] = []
    current: list[str] = []
    size = -1  # characters of "\n".join(current): -1 when empty, so each line adds 1 + len
    for raw in text.splitlines():
        for line in _pieces(raw):
            if current and size + 1 + len(line) > MAX_PASSAGE_CHARS:
                passages.append("\n".join(current))
                last = current[-1]
                carry = (
                    len(current) > 1
                    and len(last) <= MAX_OVERLAP_CHARS
                    and len(last) + 1 + len(line) <= MAX_PASSAGE_CHARS
                )
                current, size = ([last], len(last)) if carry else ([], -1)
            current.append(line)
            size += 1 + len(line)
    if current:
        passages.append("\n".join(current))
    return passages


def event_passages(observation: Observation, events: Sequence[AgentEvent]) -> list[Passage]:
    """The passages of ``events``' text, linked to ``observation``."""
    found: list[Passage] = []
    for event in events:
        for ordinal, text in enumerate(chunk(event_text(event))):
            tf, length = weighted_frequencies([("raw", text)])
            if not tf:
                continue
            found.append(
                Passage(
                    team_id=observation.team_id,
                    project_id=observation.project_id,
                    observation_id=observation.id,
                    origin=Origin.EVENT,
                    event_id=event.id,
                    ordinal=ordinal,
                    text=text,
                    tf=tf,
                    length=length,
                )
            )
    return found


def passages_for(
    observations: Sequence[Observation], events: Sequence[AgentEvent] = ()
) -> list[Passage]:
    """Every passage of newly stored observations. Events are linked by position when each
    observation was made from one event (as many of each), else every event's text is
    linked to every observation. Summaries get no event passages: a summary covers a whole
    session, and its own text says what it is about."""
    found: list[Passage] = []
    generated = [o for o in observations if o.kind is not ObservationKind.SUMMARY]
    paired = len(generated) == len(events)
    for n, observation in enumerate(generated):
        found.append(observation_passage(observation))
        if events:
            found.extend(event_passages(observation, [events[n]] if paired else events))
    found.extend(observation_passage(o) for o in observations if o.kind is ObservationKind.SUMMARY)
    return found

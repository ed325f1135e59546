"""Supersession: a newer generated observation replaces the older ones about the same thing.

The rule, the same for every provider: two generated observations of one project have the
same **subject** when they have the same ``type``, the same normalised title and the same
non-empty set of ``files_modified`` (each normalised as :func:`fingerprint.normalise`
does: NFKC, case-folded, whitespace collapsed; the files as a set, so their order does not
matter). "Wrote src/app.py" twice, or "Edited X" twice, is the same file written again:
the newest is the file's current state. An observation that modified no file has no
subject and never supersedes nor is superseded: a discovery or a decision is not replaced
by the next one that happens to share its title.

Of the observations of one subject, the **current** one is the newest (``created_at``,
then the id in byte order); every other one is superseded by it (``superseded_by``,
``superseded_at``), stays readable, and ranks lower in search (its passages' scores are
multiplied by ``ranking.SUPERSEDED_WEIGHT``). Storage applies the rule when a generated
observation is stored (``ObservationRepository.supersede``), and again when an erase
removes the observation that superseded others.

The key is ``v1:`` and the SHA-256 of the normalised fields' canonical JSON, as the
fingerprint is; NULL when there is no subject.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime

from claude_mem_core.domain.fingerprint import normalise
from claude_mem_core.domain.models import Observation, ObservationKind

VERSION = "v1"


def subject(*, type: str | None, title: str | None, files_modified: Iterable[str]) -> str | None:
    """The subject key of an observation with these fields, or None (no file modified)."""
    files = sorted({n for n in (normalise(f) for f in files_modified) if n})
    if not files:
        return None
    canonical = json.dumps(
        [normalise(type), normalise(title), files], ensure_ascii=False, separators=(",", ":")
    )
    return f"{VERSION}:{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"


def subject_of(observation: Observation) -> str | None:
    """The subject of a generated observation (one with a fingerprint); None for memories
    and summaries, which are kept as written."""
    if observation.kind != ObservationKind.OBSERVATION or observation.fingerprint is None:
        return None
    return subject(
        type=observation.type, title=observation.title, files_modified=observation.files_modified
    )


def current(rows: Sequence[tuple[str, datetime]]) -> str:
    """Of (id, created_at) pairs of one subject's current observations, the one that stays
    current: the newest, then the greatest id (ids compared as code points, as byte order)."""
    return max(rows, key=lambda row: (row[1], row[0]))[0]

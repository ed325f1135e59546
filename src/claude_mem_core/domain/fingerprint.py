"""An observation's fingerprint: what makes two generated observations "the same fact".

Generated observations whose fingerprints are equal are stored once per project (team and
project scope): a second one only links its source event to the stored row and counts
one more occurrence (``services/generation_persist.py``, the unique index of revision 0016).

What it covers, and why:

* the observation's ``type``, ``title``, ``facts`` and ``narrative``: the fields that
  carry its meaning. The subtitle only labels the step (the agent's own description of
  it), concepts and file lists are derived from the same facts, and ``content`` is a
  rendering of the fields above.
* each field normalised: Unicode NFKC, case-folded, whitespace runs collapsed to one space
  and trimmed. Facts are a set: their order and empty facts do not matter.
* never ids, timestamps, session ids or the job that made it, so the same tool call seen
  again in another session (a transcript imported twice) has the same fingerprint.

The value is ``v1:`` and the SHA-256 of the normalised fields' canonical JSON; the prefix
lets a later definition live beside this one (old rows keep theirs).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable

VERSION = "v1"


def normalise(text: str | None) -> str:
    """NFKC, case-folded, whitespace collapsed: the form two texts are compared in."""
    if not text:
        return ""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def fingerprint(
    *, type: str | None, title: str | None, facts: Iterable[str], narrative: str | None
) -> str:
    """The fingerprint of an observation with these fields (see the module docstring)."""
    normal_facts = sorted({n for n in (normalise(f) for f in facts) if n})
    canonical = json.dumps(
        [normalise(type), normalise(title), normal_facts, normalise(narrative)],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return f"{VERSION}:{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"

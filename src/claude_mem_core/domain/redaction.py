"""Redaction of credentials from event payloads before they are stored or sent to a model.

Only typed detectors: each recognises one kind of credential by its documented shape
(a fixed prefix, a fixed length, an armour line), never by how random a string looks, so
commit SHAs, UUIDs and content hashes pass untouched. A match is replaced by a marker that
names its type, ``[REDACTED:aws-access-key]``; for ``NAME=value`` lines only the value is.

Speed: every string of every payload goes through here. A cheap substring prefilter (the
literal parts every built-in detector needs) skips the regular expression for the great
majority of strings that hold none; the detectors are one alternation, compiled once.

Redaction is idempotent (markers match no detector) and a string with nothing to redact is
returned as the very same object.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from attrs import field, frozen

MARKER = "[REDACTED:{}]"
# Project metadata key holding per-project ingest settings (``{"enabled": false}`` turns
# redaction off for that project, ``true`` on, whatever the server's default).
PROJECT_SETTING = "redaction"
# Event metadata keys the server sets when it first stores an event: how many of each type
# were redacted, and the SHA-256 of the payload's canonical JSON as it was received (before
# privacy stripping and redaction), which tells an identical replay from a conflicting one.
REDACTIONS_KEY = "redactions"
RECEIVED_DIGEST_KEY = "receivedPayloadSha256"
SERVER_EVENT_METADATA = frozenset({REDACTIONS_KEY, RECEIVED_DIGEST_KEY})

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# A variable name that says it holds a credential (upper case, as in environment files).
_SECRET_NAME = (
    r"(?:PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|"
    r"PRIVATE_?KEY|CREDENTIALS?)[A-Z0-9_]*"
)


@frozen
class Detector:
    """One credential type: its name (used in markers and counts), a pattern, and the
    literal strings at least one of which every match contains (the prefilter).
    ``value_only``: the pattern has a group named ``value``; only that part is replaced."""

    name: str
    pattern: str
    needles: tuple[str, ...]
    value_only: bool = False


_TOKEN_START = r"(?<![A-Za-z0-9])"
_TOKEN_END = r"(?![A-Za-z0-9])"

BUILTIN_DETECTORS: tuple[Detector, ...] = (
    Detector(
        "private-key",
        # The whole armoured block; a block cut short (no END line) up to where its
        # base64 body ends.
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        r"|[A-Za-z0-9+/=\s\\:,.-]*)",
        ("KEY",),
    ),
    Detector("anthropic-api-key", _TOKEN_START + r"sk-ant-[A-Za-z0-9_-]{20,}", ("sk-ant-",)),
    Detector(
        "openai-api-key",
        # At least one digit: a real key is random, a hyphenated word is not a key.
        _TOKEN_START + r"sk-(?:proj-|svcacct-|admin-)?(?=[A-Za-z_-]*[0-9])[A-Za-z0-9_-]{20,}",
        ("sk-",),
    ),
    Detector(
        "aws-access-key",
        _TOKEN_START + r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}" + _TOKEN_END,
        ("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
    ),
    Detector(
        "github-token",
        _TOKEN_START + r"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    Detector("gitlab-token", _TOKEN_START + r"glpat-[A-Za-z0-9_-]{20,}", ("glpat-",)),
    Detector("slack-token", _TOKEN_START + r"xox[abposr]-[A-Za-z0-9-]{10,}", ("xox",)),
    Detector(
        "stripe-secret-key",
        _TOKEN_START + r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
        ("k_live_", "k_test_"),
    ),
    Detector("google-api-key", _TOKEN_START + r"AIza[A-Za-z0-9_-]{35}" + _TOKEN_END, ("AIza",)),
    Detector(
        "jwt",
        r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*",
        ("eyJ",),
    ),
    Detector("claude-mem-api-key", _TOKEN_START + r"cmem_[A-Za-z0-9_-]{32,}", ("cmem_",)),
    Detector(
        "env-secret",
        # NAME=value, NAME="value", export NAME='value': the value goes, the name stays.
        # Not a comparison (==), not an empty value, not a reference ($VAR, ${VAR}), not
        # a value already redacted, not an expression (os.environ[...], f(...)).
        _SECRET_NAME + r"[ \t]*=(?!=)[ \t]*"
        r"(?P<value>(?!\[REDACTED:)"
        r"(?:\"[^\"\n]+\"|'[^'\n]+'|[^\s\"'$%(){}\[\]<>,;`=][^\s\"'(){}\[\]<>,;`]*+(?![(\[])))",
        ("PASS", "SECRET", "TOKEN", "KEY", "CREDENTIAL"),
        value_only=True,
    ),
)

# No built-in detector matches fewer characters ("TOKEN=x"); below this length, nothing to
# look for. Up to _SHORT_TEXT characters, the prefilter is one regular expression search.
_SHORTEST = 7
_SHORT_TEXT = 256
# A redaction can change a character next to another candidate (a word boundary); a few
# passes reach the fixed point that makes redaction idempotent.
_MAX_PASSES = 4


@frozen
class JsonRedaction:
    """A JSON value with credentials redacted from every string, and the counts by type."""

    value: Any
    counts: dict[str, int] = field(factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def parse_extra_patterns(raw: Mapping[str, str] | str | None) -> dict[str, str]:
    """Validate extra detectors (type name -> regular expression); a JSON object string is
    accepted (as read from the environment). Raises ``ValueError`` saying what is wrong."""
    import json

    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if isinstance(raw, str):
        try:
            loaded = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"must be a JSON object of name -> pattern ({e})") from None
        if not isinstance(loaded, dict):
            raise ValueError("must be a JSON object of name -> pattern")
        raw = loaded
    patterns: dict[str, str] = {}
    for name, pattern in raw.items():
        if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
            raise ValueError(f"{name!r} is not a valid type name (lower case, digits, '-')")
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"the pattern of {name!r} must be a non-empty string")
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"the pattern of {name!r} is not a valid expression: {e}") from None
        if compiled.match("") is not None:
            raise ValueError(f"the pattern of {name!r} matches the empty string")
        patterns[name] = pattern
    return patterns


def _combined(detectors: Iterable[Detector]) -> tuple[re.Pattern[str], dict[str, Detector]]:
    groups: dict[str, Detector] = {}
    parts: list[str] = []
    for n, detector in enumerate(detectors):
        group = f"d{n}"
        groups[group] = detector
        pattern = detector.pattern
        if detector.value_only:
            pattern = pattern.replace("(?P<value>", f"(?P<{group}v>", 1)
        parts.append(f"(?P<{group}>{pattern})")
    return re.compile("|".join(parts)), groups


class Redactor:
    """Replaces credentials with typed markers. Build once (patterns compile here)."""

    def __init__(self, extra_patterns: Mapping[str, str] | None = None) -> None:
        self.extra_patterns = dict(parse_extra_patterns(extra_patterns or {}))
        self._needles = tuple(dict.fromkeys(n for d in BUILTIN_DETECTORS for n in d.needles))
        self._prefilter = re.compile("|".join(map(re.escape, self._needles)))
        self._builtin, self._builtin_groups = _combined(BUILTIN_DETECTORS)
        self._extra: re.Pattern[str] | None = None
        self._extra_groups: dict[str, Detector] = {}
        if self.extra_patterns:
            extras = [Detector(n, f"(?:{p})", ()) for n, p in self.extra_patterns.items()]
            self._extra, self._extra_groups = _combined(extras)

    def _sub(
        self,
        expression: re.Pattern[str],
        groups: Mapping[str, Detector],
        text: str,
        counts: Counter[str],
    ) -> str:
        def replace(match: re.Match[str]) -> str:
            group = match.lastgroup or ""
            detector = groups[group]
            counts[detector.name] += 1
            marker = MARKER.format(detector.name)
            if not detector.value_only:
                return marker
            start, end = match.span(group + "v")
            whole = match.group(0)
            offset = match.start()
            return whole[: start - offset] + marker + whole[end - offset :]

        return expression.sub(replace, text)

    def _needs_builtin(self, text: str) -> bool:
        if len(text) < _SHORTEST:
            return False
        if len(text) < _SHORT_TEXT:  # one search costs less than many calls
            return self._prefilter.search(text) is not None
        return any(map(text.__contains__, self._needles))

    def redact(self, text: str, counts: Counter[str] | None = None) -> str:
        """``text`` with each credential replaced by its marker (the same object if none);
        adds what it replaced to ``counts``."""
        found: Counter[str] = Counter() if counts is None else counts
        result = text
        for _ in range(_MAX_PASSES):
            before = sum(found.values())
            if self._needs_builtin(result):
                result = self._sub(self._builtin, self._builtin_groups, result, found)
            if self._extra is not None:
                result = self._sub(self._extra, self._extra_groups, result, found)
            if sum(found.values()) == before:
                break
        return text if result == text else result

    def redact_json(self, value: Any) -> JsonRedaction:
        """Redact every string inside a JSON-like value (dict keys are names: kept).

        The input is never modified; containers on the way to a changed string are copied,
        the rest is shared, and a value with nothing to redact comes back as itself.
        Iterative: nesting deeper than the recursion limit is handled too.
        """
        counts: Counter[str] = Counter()
        if isinstance(value, str):
            return JsonRedaction(self.redact(value, counts), dict(counts))
        if not isinstance(value, dict | list | tuple):
            return JsonRedaction(value, {})
        changes: list[tuple[tuple[Any, ...], str]] = []
        stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
        while stack:
            node, path = stack.pop()
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                if isinstance(child, str):
                    redacted = self.redact(child, counts)
                    if redacted is not child:
                        changes.append(((*path, key), redacted))
                elif isinstance(child, dict | list | tuple):
                    stack.append((child, (*path, key)))
        if not changes:
            return JsonRedaction(value, {})
        return JsonRedaction(_apply(value, changes), dict(counts))

    def has_secret(self, text: str) -> bool:
        """Whether ``text`` holds anything a detector would redact."""
        return self.redact(text) is not text


def _apply(root: Any, changes: list[tuple[tuple[Any, ...], str]]) -> Any:
    """A copy of ``root`` with each (path, new string) set, copying only along the paths
    (a tuple on a path is copied as a list: JSON knows only arrays)."""
    copies: dict[int, Any] = {}

    def own(node: Any) -> Any:
        copy = copies.get(id(node))
        if copy is None:
            copy = dict(node) if isinstance(node, dict) else list(node)
            copies[id(node)] = copy
        return copy

    top = own(root)
    for path, text in changes:
        original, node = root, top
        for key in path[:-1]:
            original = original[key]
            child = own(original)
            node[key] = child
            node = child
        node[path[-1]] = text
    return top


DEFAULT_REDACTOR = Redactor()


def enabled_for(project_metadata: Mapping[str, Any] | None, *, default: bool) -> bool:
    """Whether a project's events are redacted: its own setting, else ``default``."""
    setting = (project_metadata or {}).get(PROJECT_SETTING)
    if isinstance(setting, Mapping) and isinstance(setting.get("enabled"), bool):
        return bool(setting["enabled"])
    return default

"""Credential redaction: typed detectors, what survives, and its properties."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_mem_core.config import Settings
from claude_mem_core.domain.redaction import (
    BUILTIN_DETECTORS,
    DEFAULT_REDACTOR,
    Redactor,
    enabled_for,
    parse_extra_patterns,
)
from claude_mem_core.errors import ConfigurationError

R = DEFAULT_REDACTOR

# Made-up credentials of each type (the shapes are public; the values are random).
SECRETS: dict[str, list[str]] = {
    "anthropic-api-key": ["sk-ant-api03-" + "Ab3_" * 20 + "xYz9-AA"],
    "openai-api-key": [
        "sk-proj-" + "a1B2c3D4e5" * 5,
        "sk-" + "T3BlbkFJ" * 6,
    ],
    "aws-access-key": ["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"],
    "github-token": ["ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8", "github_pat_11ABCDEFG0" + "x9Y8z7" * 8],
    "gitlab-token": ["glpat-" + "Xy9_Zw8-Vu7" * 2],
    "slack-token": ["xoxb-1234567890-0987654321-AbCdEfGhIjKlMn"],
    "stripe-secret-key": ["sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"],
    "google-api-key": ["AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"],
    "jwt": [
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    ],
    "claude-mem-api-key": ["cmem_" + "Qk7_" * 8 + "zz90Aa-bB1c"],
    "private-key": [
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7bq9\nq2Vb+/Zx==\n"
        "-----END RSA PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\nAAAA",
    ],
}
ALL_SECRETS = [(kind, s) for kind, values in SECRETS.items() for s in values]
# The secret part of each env line (what must be gone), and the line.
ENV_LINES = [
    ("hunter2", "PASSWORD=hunter2"),
    ("s3cret pass", "export DB_PASSWORD='s3cret pass'"),
    ("abc.def-123", 'GITHUB_TOKEN="abc.def-123"'),
    ("Zq9!x", "AWS_SECRET_ACCESS_KEY = Zq9!x"),
    ("tok", "docker run -e API_KEY=tok image"),
]


@pytest.mark.parametrize(("kind", "secret"), ALL_SECRETS)
def test_each_type_is_replaced_by_its_marker(kind: str, secret: str) -> None:
    counts: Counter[str] = Counter()
    text = f"before {secret} after"
    out = R.redact(text, counts)
    assert out == f"before [REDACTED:{kind}] after" or (
        kind == "private-key" and out.startswith(f"before [REDACTED:{kind}]")
    )
    assert secret not in out
    assert counts == {kind: 1}


@pytest.mark.parametrize(("value", "line"), ENV_LINES)
def test_env_lines_keep_the_name_and_lose_the_value(value: str, line: str) -> None:
    out = R.redact(line)
    assert value not in out
    assert "[REDACTED:env-secret]" in out
    assert out.split("=")[0] == line.split("=")[0]


@pytest.mark.parametrize(
    "text",
    [
        "TOKEN=$TOKEN",
        "PASSWORD=${DB_PASSWORD}",
        "if PASSWORD == other:",
        "API_KEY = os.environ['API_KEY']",
        "password=lowercase-names-are-code",
        "PASSWORD=",
    ],
)
def test_env_references_comparisons_and_expressions_stay(text: str) -> None:
    assert R.redact(text) is text


def test_hashes_ids_and_words_survive_byte_for_byte() -> None:
    text = "\n".join(
        [
            "commit 3f786850e387550fdab836ed7e6dc881de23001b",
            f"sha256 {hashlib.sha256(b'x').hexdigest()}",
            f"uuid {uuid.UUID(int=0x123E4567E89B12D3A456426614174000)}",
            f"id {uuid.uuid4()} {uuid.uuid4().hex}",
            "base64 aGVsbG8gd29ybGQgdGhpcyBpcyBub3QgYSBzZWNyZXQ=",
            "task-abcdefghijklmnopqrstuvwx disk-partition-scheme-default",
            "sk-learn is a library; skip-worktree; AKIA is four letters",
            "eyJ alone; cmem_short; ghp_short; xox; PRIVATE KEY mentioned in prose",
        ]
    )
    assert R.redact(text) is text


@settings(max_examples=200)
@given(st.lists(st.sampled_from([s for _, s in ALL_SECRETS]), min_size=1), st.text())
def test_no_known_secret_survives_and_redaction_is_idempotent(
    secrets: list[str], filler: str
) -> None:
    text = filler.join(f" {s} " for s in secrets)
    once = R.redact(text)
    for secret in secrets:
        assert secret not in once
    assert R.redact(once) == once
    counts: Counter[str] = Counter()
    R.redact(once, counts)
    assert not counts


@settings(max_examples=300)
@given(st.text())
def test_redaction_is_idempotent_on_any_text(text: str) -> None:
    once = R.redact(text)
    assert R.redact(once) == once


HEX = st.text(alphabet="0123456789abcdef", min_size=7, max_size=64)
PLAIN = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="=-_"), max_size=200
)


@settings(max_examples=300)
@given(st.lists(st.one_of(HEX, PLAIN, st.uuids().map(str)), max_size=8))
def test_text_without_secrets_comes_back_identical(parts: list[str]) -> None:
    text = " ".join(parts)
    # Plain text may spell a keyword by chance (TOKEN=...): the '=' is excluded above, and
    # no hex, UUID or text without '-', '_' or '=' has a credential's shape.
    assert R.redact(text) is text


def test_json_redaction_copies_only_what_changes_and_counts() -> None:
    clean = {"keep": ["a", 1, None, {"deep": "b"}]}
    payload: dict[str, Any] = {
        "tool_response": {"stdout": "AKIAIOSFODNN7EXAMPLE\nPASSWORD=x1"},
        "list": ("ghp_" + "a1" * 18, "ok"),
        "clean": clean,
        "n": 3,
    }
    result = R.redact_json(payload)
    assert result.counts == {"aws-access-key": 1, "env-secret": 1, "github-token": 1}
    assert result.value["tool_response"]["stdout"] == (
        "[REDACTED:aws-access-key]\nPASSWORD=[REDACTED:env-secret]"
    )
    assert list(result.value["list"]) == ["[REDACTED:github-token]", "ok"]
    assert result.value["clean"] is clean  # untouched branches are shared
    assert payload["tool_response"]["stdout"].startswith("AKIA")  # the input is not modified
    untouched = {"a": ["b", {"c": "d"}]}
    assert R.redact_json(untouched).value is untouched
    assert R.redact_json(7).value == 7
    assert R.redact_json("AKIAIOSFODNN7EXAMPLE").value == "[REDACTED:aws-access-key]"


def test_json_redaction_handles_nesting_deeper_than_the_recursion_limit() -> None:
    value: Any = "AKIAIOSFODNN7EXAMPLE"
    for _ in range(5000):
        value = [value]
    result = R.redact_json(value)
    assert result.counts == {"aws-access-key": 1}
    inner = result.value
    for _ in range(5000):
        inner = inner[0]
    assert inner == "[REDACTED:aws-access-key]"


def test_extra_patterns_add_types() -> None:
    redactor = Redactor({"acme-token": r"acme_[0-9a-f]{16}"})
    counts: Counter[str] = Counter()
    out = redactor.redact("t=acme_0123456789abcdef and AKIAIOSFODNN7EXAMPLE", counts)
    assert out == "t=[REDACTED:acme-token] and [REDACTED:aws-access-key]"
    assert counts == {"acme-token": 1, "aws-access-key": 1}


@pytest.mark.parametrize(
    "raw",
    ['{"Bad Name": "x"}', '{"ok": "("}', '{"empty": "a*"}', "[1]", "not json"],
)
def test_bad_extra_patterns_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_extra_patterns(raw)
    with pytest.raises(ConfigurationError):
        Settings.from_env(
            {"CLAUDE_MEM_DATA_DIR": "/nonexistent", "CLAUDE_MEM_REDACTION_PATTERNS": raw}
        )


def test_settings_switch_and_patterns_reach_the_pipeline() -> None:
    base = {"CLAUDE_MEM_DATA_DIR": "/nonexistent"}
    assert Settings.from_env(base).pipeline_options().redact_secrets is True
    off = Settings.from_env({**base, "CLAUDE_MEM_REDACTION": "off"})
    assert off.pipeline_options().redact_secrets is False
    with pytest.raises(ConfigurationError):
        Settings.from_env({**base, "CLAUDE_MEM_REDACTION": "maybe"})
    extra = Settings.from_env(
        {**base, "CLAUDE_MEM_REDACTION_PATTERNS": '{"acme": "acme_[0-9]{8}"}'}
    )
    assert extra.pipeline_options().redactor.redact("acme_12345678") == "[REDACTED:acme]"


def test_project_setting_overrides_the_default() -> None:
    assert enabled_for(None, default=True) is True
    assert enabled_for({"redaction": {"enabled": False}}, default=True) is False
    assert enabled_for({"redaction": {"enabled": True}}, default=False) is True
    assert enabled_for({"redaction": "junk"}, default=False) is False


def test_markers_match_no_detector() -> None:
    for detector in BUILTIN_DETECTORS:
        marker = f"[REDACTED:{detector.name}]"
        assert R.redact(f"x {marker} y") == f"x {marker} y"
        assert re.search(detector.pattern, marker) is None

"""The operator CLI on the embedded SQLite default: tables, --json, exit codes."""

from __future__ import annotations

import json

import pytest

from claude_mem_core.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_team_project_and_key_lifecycle(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "migrate")
    assert code == 0 and "migrated" in out
    code, out, _ = run(capsys, "--json", "teams", "create", "acme")
    team = json.loads(out)
    assert code == 0 and team["name"] == "acme"
    code, out, _ = run(capsys, "projects", "create", "--team", team["id"], "webapp", "--json")
    project = json.loads(out)
    code, out, _ = run(
        capsys,
        "api-key",
        "create",
        "--team",
        team["id"],
        "--project",
        project["id"],
        "--scopes",
        "events:write,observations:read",
        "--json",
    )
    key = json.loads(out)
    assert key["key"].startswith("cmem_") and key["scopes"] == ["events:write", "observations:read"]
    code, out, _ = run(capsys, "api-key", "list", "--team", team["id"])
    assert code == 0 and key["id"] in out and key["key"] not in out and "SCOPES" in out
    assert "1 shown (1-1 of 1)" in out
    code, out, _ = run(capsys, "server", "api-key", "rotate", key["id"], "--json")
    rotated = json.loads(out)
    assert rotated["replaces"] == key["id"] and rotated["key"] != key["key"]
    code, out, _ = run(capsys, "api-key", "revoke", rotated["id"])
    assert code == 0 and "Revoked" in out
    code, out, _ = run(capsys, "--json", "api-key", "list", "--team", team["id"])
    statuses = {k["id"]: k["status"] for k in json.loads(out)["keys"]}
    assert statuses == {key["id"]: "revoked", rotated["id"]: "revoked"}


def test_jobs_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--json", "teams", "create", "acme")
    team = json.loads(out)["id"]
    code, out, _ = run(capsys, "jobs", "status", "--team", team)
    assert code == 0 and "STATUS" in out and "queued" in out
    code, out, err = run(capsys, "jobs", "retry", "no-such-job", "--team", team)
    assert code == 1 and "Generation job not found" in err
    code, out, _ = run(capsys, "--json", "server", "jobs", "failed", "--team", team)
    assert code == 0 and json.loads(out)["failed"] == []


@pytest.mark.parametrize(
    "argv",
    [
        ["teams", "list", "--limit", "zero"],
        ["teams", "list", "--limit", "0"],
        ["api-key", "create"],
        ["jobs", "status"],
        ["no-such-command"],
        ["api-key", "create", "--team", "t", "--expires", "whenever"],
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.strip() and "Traceback" not in err


def test_domain_errors_are_messages_not_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "projects", "create", "--team", "missing-team", "x")
    assert code == 1 and err.startswith("error: Team not found")
    code, _, err = run(capsys, "api-key", "create", "--team", "t", "--scopes", "root")
    assert code == 2 and "unknown scope" in err

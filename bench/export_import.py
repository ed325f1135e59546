"""Export and import of a large project on SQLite: rates and peak memory.

    .venv/bin/python bench/export_import.py [--events 100000] [--dir /tmp/cm-bench]

Seeds a project of N events (in sessions of 200, one memory per session) on one SQLite
file, then runs the export (to a file) and the import (into a fresh SQLite file) each in a
process of its own, so each reports its own peak resident memory (``ru_maxrss``). Not part
of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from claude_mem_core import Memory, Scope
from claude_mem_core.adapters import storage_from_url
from claude_mem_core.adapters.offline_provider import OfflineProvider
from claude_mem_core.migrations import upgrade
from claude_mem_core.services.ingest import EventInput

SESSION_EVENTS = 200
BATCH = 100


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


async def _open(url: str) -> Memory:
    await upgrade(url)
    return Memory(storage=storage_from_url(url), queue=None, provider=OfflineProvider())


async def seed(url: str, events: int) -> dict[str, object]:
    memory = await _open(url)
    started = time.perf_counter()
    team, project = await memory.ensure_project("bench", "big")
    scope = Scope(team_id=team.id, project_id=project.id)
    base = datetime(2025, 1, 1, tzinfo=UTC)
    done = 0
    while done < events:
        session = (await memory.start_session(scope, external_session_id=f"s-{done}")).session
        for start in range(0, min(SESSION_EVENTS, events - done), BATCH):
            items = [
                EventInput(
                    project_id=project.id,
                    source_adapter="api",
                    event_type="tool_use",
                    occurred_at=base + timedelta(seconds=done + start + n),
                    server_session_id=session.id,
                    source_event_id=f"e-{done + start + n}",
                    payload={
                        "tool_name": "Bash",
                        "tool_input": {"command": f"pytest tests/test_{done + start + n}.py"},
                        "tool_response": "collected 12 items\n" + "." * 200 + "\n12 passed",
                    },
                )
                for n in range(min(BATCH, events - done - start))
            ]
            await memory.ingest_batch(scope, items, generate=False)
        await memory.add_memory(
            scope, f"Session {done}: the suite passed after the fixture fix.", title="Fixtures"
        )
        done += min(SESSION_EVENTS, events - done)
    await memory.storage.close()
    return {"events": events, "seconds": round(time.perf_counter() - started, 1)}


async def export(url: str, path: Path) -> dict[str, object]:
    memory = await _open(url)
    async with memory.storage.unit_of_work() as uow:
        team = await uow.teams.find_by_name("bench")
        assert team is not None
        project = await uow.projects.find_by_name(team.id, "big")
        assert project is not None
    scope = Scope(team_id=team.id, project_id=project.id)
    started = time.perf_counter()
    lines = size = 0
    with path.open("w", encoding="utf-8") as out:
        async for line in memory.export_project(scope):
            out.write(line)
            lines += 1
            size += len(line.encode("utf-8"))
    seconds = time.perf_counter() - started
    await memory.storage.close()
    return {
        "lines": lines,
        "bytes": size,
        "seconds": round(seconds, 2),
        "linesPerSecond": round(lines / seconds),
        "peakRssMb": round(_peak_mb(), 1),
    }


async def import_(url: str, path: Path) -> dict[str, object]:
    memory = await _open(url)
    team, project = await memory.ensure_project("bench", "copy")
    scope = Scope(team_id=team.id, project_id=project.id)

    async def lines():  # type: ignore[no-untyped-def]
        with path.open("rb") as handle:
            for line in handle:
                yield line

    started = time.perf_counter()
    report = await memory.import_project(scope, lines())
    seconds = time.perf_counter() - started
    hits = await memory.search(scope, "fixture fix", limit=3)
    await memory.storage.close()
    return {
        **report.as_dict(),
        "seconds": round(seconds, 2),
        "linesPerSecond": round(report.lines / seconds),
        "searchHits": len(hits),
        "peakRssMb": round(_peak_mb(), 1),
    }


def _child(phase: str, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, __file__, "--phase", phase, *args],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--dir", default="/tmp/claude-mem-bench-export")
    parser.add_argument("--phase", choices=["seed", "export", "import"])
    parser.add_argument("--url")
    parser.add_argument("--file")
    args = parser.parse_args()
    if args.phase == "seed":
        print(json.dumps(asyncio.run(seed(args.url, args.events))))
        return
    if args.phase == "export":
        print(json.dumps(asyncio.run(export(args.url, Path(args.file)))))
        return
    if args.phase == "import":
        print(json.dumps(asyncio.run(import_(args.url, Path(args.file)))))
        return
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    source, target = folder / "source.db", folder / "target.db"
    for stale in (source, target):
        stale.unlink(missing_ok=True)
    source_url = f"sqlite+aiosqlite:///{source}"
    target_url = f"sqlite+aiosqlite:///{target}"
    dump = folder / "big.jsonl"
    print("seed", _child("seed", "--url", source_url, "--events", str(args.events)), flush=True)
    print("export", _child("export", "--url", source_url, "--file", str(dump)), flush=True)
    print("import", _child("import", "--url", target_url, "--file", str(dump)), flush=True)


if __name__ == "__main__":
    main()

"""The token ledger of the in-memory storage: one entry per provider call, summed into
usage."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from claude_mem_core.adapters.memory_state import Repo, in_scope
from claude_mem_core.errors import NotFound
from claude_mem_core.ports.ledger import LedgerEntry, UsageGrouping, UsageRow


class MemoryLedger(Repo):
    async def add(self, entry: LedgerEntry, *, alone: bool = False) -> None:
        if self._tx.read("projects").get(entry.project_id) is None:
            raise NotFound(f"project {entry.project_id} not found")
        self._tx.write("ledger")[entry.id] = entry

    async def usage(
        self,
        team_id: str,
        project_id: str | None,
        *,
        since: datetime,
        until: datetime,
        group_by: UsageGrouping,
    ) -> Sequence[UsageRow]:
        sums: dict[str, list[Any]] = {}
        for e in self._tx.read("ledger").values():
            if not in_scope(e, team_id, project_id) or not since <= e.called_at < until:
                continue
            if group_by == "project":
                group = e.project_id
            elif group_by == "model":
                group = f"{e.provider}/{e.model or '-'}"
            else:
                group = e.called_at.astimezone(UTC).strftime("%Y-%m-%d")
            row = sums.setdefault(group, [0, 0, 0, 0.0, 0])
            row[0] += 1
            row[1] += e.input_tokens or 0
            row[2] += e.output_tokens or 0
            row[3] += e.cost_usd or 0.0
            row[4] += e.cost_usd is None
        return [
            UsageRow(
                group=group,
                calls=calls,
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                cost_usd=cost,
                unpriced_calls=unpriced,
            )
            for group, (calls, tokens_in, tokens_out, cost, unpriced) in sorted(sums.items())
        ]

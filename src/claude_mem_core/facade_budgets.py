"""The budget methods of the library's :class:`~claude_mem_core.facade.Memory` (a mixin,
so the facade stays short): set, show and clear a project's token budget
(``services/budgets.py``)."""

from __future__ import annotations

from claude_mem_core.domain.budgets import Period
from claude_mem_core.domain.models import Scope
from claude_mem_core.services import budgets
from claude_mem_core.services.context import Caller, Deps


class BudgetMethods:
    deps: Deps

    async def set_budget(
        self,
        scope: Scope,
        *,
        period: Period = "month",
        token_limit: int | None = None,
        usd_limit: float | None = None,
    ) -> budgets.BudgetStatus | None:
        """Limit what the scope's project's generation spends per UTC ``period`` (``day``
        or ``month``): ``token_limit`` tokens (input + output) and/or ``usd_limit``
        estimated US dollars. Neither clears the budget (and returns None). Jobs it held
        run at once if the change lets them."""
        return await budgets.set_budget(
            self.deps,
            Caller.embedded(scope.team_id, project_id=scope.project_id),
            scope.project_id,
            period=period,
            token_limit=token_limit,
            usd_limit=usd_limit,
        )

    async def clear_budget(self, scope: Scope) -> None:
        """Remove the scope's project's budget; the jobs it held run at once."""
        await budgets.clear_budget(
            self.deps, Caller.embedded(scope.team_id, project_id=scope.project_id), scope.project_id
        )

    async def budget(self, scope: Scope) -> budgets.BudgetStatus | None:
        """The scope's project's budget with what its current period spent and has left,
        or None without a budget."""
        return await budgets.status(
            self.deps, Caller.embedded(scope.team_id, project_id=scope.project_id), scope.project_id
        )

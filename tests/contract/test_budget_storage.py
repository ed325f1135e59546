"""The budget ports' contract (``claude_mem_core.testing.budget_contracts``) on every
storage backend."""

from __future__ import annotations

from claude_mem_core.testing.budget_contracts import BudgetContract


class TestBudgetStorage(BudgetContract):
    pass

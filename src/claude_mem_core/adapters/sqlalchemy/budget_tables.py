"""The budget tables (revision 0015, ``services/budgets.py``), defined on the schema's
metadata by ``tables.py`` (which stays short by calling :func:`define`):

* ``project_budgets``: a project's limit per UTC day or month, in tokens and/or dollars;
* ``budget_periods``: a counter row per project and period: spent, reserved by calls in
  flight, calls settled (``BudgetRepository.reserve`` guards its UPDATE on them);
* ``provider_pauses``: until when a provider asked every worker to wait (a 429 with
  ``retry-after``);
* ``provider_rate_windows`` (revision 0019, :func:`define_rates`): the calls started per
  provider and UTC minute (``ProviderRateRepository.take`` guards its UPDATE on them);
* ``budget_reservations`` (revision 0020, :func:`define_reservations`): what each call in
  flight reserved, keyed by its job, so a dead worker's reservation can be given back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa


def define(
    metadata: sa.MetaData,
    ts: Callable[[str], sa.Column[Any]],
    scope_fk: Callable[[str], sa.ForeignKeyConstraint],
    timestamp: Callable[[], sa.types.TypeEngine[Any]],
) -> tuple[sa.Table, sa.Table, sa.Table]:
    """The three tables on ``metadata``: ``ts`` makes a timestamp column, ``scope_fk`` the
    foreign key to the project of the row's team, ``timestamp`` the timestamp type."""
    project_budgets = sa.Table(
        "project_budgets",
        metadata,
        sa.Column("team_id", sa.Text, primary_key=True),
        sa.Column("project_id", sa.Text, primary_key=True),
        sa.Column("period", sa.Text, nullable=False),
        sa.Column("token_limit", sa.BigInteger, nullable=True),
        sa.Column("usd_limit", sa.Float, nullable=True),
        ts("updated_at"),
        scope_fk("project_budgets"),
    )
    counters = [
        sa.Column(name, kind, nullable=False, server_default="0")
        for name, kind in (
            ("spent_tokens", sa.BigInteger),
            ("spent_usd", sa.Float),
            ("reserved_tokens", sa.BigInteger),
            ("reserved_usd", sa.Float),
            ("in_flight", sa.Integer),
            ("calls", sa.Integer),
        )
    ]
    budget_periods = sa.Table(
        "budget_periods",
        metadata,
        sa.Column("team_id", sa.Text, primary_key=True),
        sa.Column("project_id", sa.Text, primary_key=True),
        sa.Column("period_start", timestamp(), primary_key=True),
        *counters,
        scope_fk("budget_periods"),
    )
    provider_pauses = sa.Table(
        "provider_pauses",
        metadata,
        sa.Column("provider", sa.Text, primary_key=True),
        ts("paused_until"),
        ts("updated_at"),
    )
    return project_budgets, budget_periods, provider_pauses


def define_rates(
    metadata: sa.MetaData, timestamp: Callable[[], sa.types.TypeEngine[Any]]
) -> sa.Table:
    """``provider_rate_windows`` on ``metadata`` (no project: a limit is the provider's)."""
    return sa.Table(
        "provider_rate_windows",
        metadata,
        sa.Column("provider", sa.Text, primary_key=True),
        sa.Column("window_start", timestamp(), primary_key=True),
        sa.Column("calls", sa.Integer, nullable=False, server_default="0"),
    )


def define_reservations(
    metadata: sa.MetaData,
    ts: Callable[[str], sa.Column[Any]],
    scope_fk: Callable[[str], sa.ForeignKeyConstraint],
    timestamp: Callable[[], sa.types.TypeEngine[Any]],
) -> sa.Table:
    """``budget_reservations`` on ``metadata``: one row per call in flight (no foreign key
    to the job: a job erased mid-call is still settled by its worker)."""
    return sa.Table(
        "budget_reservations",
        metadata,
        sa.Column("job_id", sa.Text, primary_key=True),
        sa.Column("team_id", sa.Text, nullable=False),
        sa.Column("project_id", sa.Text, nullable=False),
        sa.Column("period_start", timestamp(), nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("usd", sa.Float, nullable=False),
        ts("reserved_at"),
        scope_fk("budget_reservations"),
    )

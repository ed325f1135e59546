"""The tenancy rule as SQL: the ``WHERE`` clause of a :class:`TenantScope`, built in one
place so every query that filters by tenant says what ``TenantScope.admits`` says.

:func:`admitted` takes the scope's values; :func:`bound` is the same clause for a statement
built once (``statements.py``), whose team and project come as bound parameters when it
runs. Both are :func:`_clause`: the team's rows, narrowed to one project when there is one.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import ColumnCollection

from claude_mem_core.domain.tenancy import TenantScope


def _clause(c: ColumnCollection[str, Any], team: Any, project: Any) -> sa.ColumnElement[bool]:
    """``team`` and ``project``: a value, a bound parameter, or None for "any"."""
    where: list[sa.ColumnElement[bool]] = []
    if team is not None:
        where.append(c.team_id == team)
    if project is not None:
        where.append(c.project_id == project)
    return sa.and_(sa.true(), *where)


def admitted(scope: TenantScope, c: ColumnCollection[str, Any]) -> sa.ColumnElement[bool]:
    """The rows visible in ``scope``, of the table (or alias) whose columns are ``c``: it
    has ``team_id`` and ``project_id``."""
    return _clause(c, scope.team_id, scope.project_id)


def of_tenant(
    team_id: str, project_id: str, c: ColumnCollection[str, Any]
) -> sa.ColumnElement[bool]:
    """The rows of one project of one team: :func:`admitted` of that scope."""
    return admitted(TenantScope(team_id, project_id), c)


def bound(
    c: ColumnCollection[str, Any], *, team: str = "team_id", project: str | None = "project_id"
) -> sa.ColumnElement[bool]:
    """:func:`admitted` for a statement built once: the team and project are the bound
    parameters named ``team`` and ``project`` (``project=None``: the whole team)."""
    return _clause(c, sa.bindparam(team), None if project is None else sa.bindparam(project))

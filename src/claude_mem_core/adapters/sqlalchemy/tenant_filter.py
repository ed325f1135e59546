"""The tenancy rule as SQL: the ``WHERE`` clause of a :class:`TenantScope`, built in one
place so every query that filters by tenant says what ``TenantScope.admits`` says."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import ColumnCollection

from claude_mem_core.domain.tenancy import TenantScope


def admitted(scope: TenantScope, c: ColumnCollection[str, Any]) -> sa.ColumnElement[bool]:
    """The rows visible in ``scope``, of the table (or alias) whose columns are ``c``: it
    has ``team_id`` and ``project_id``."""
    where: list[sa.ColumnElement[bool]] = []
    if scope.team_id is not None:
        where.append(c.team_id == scope.team_id)
    if scope.project_id is not None:
        where.append(c.project_id == scope.project_id)
    return sa.and_(sa.true(), *where)


def of_tenant(
    team_id: str, project_id: str, c: ColumnCollection[str, Any]
) -> sa.ColumnElement[bool]:
    """The rows of one project of one team: :func:`admitted` of that scope."""
    return admitted(TenantScope(team_id, project_id), c)

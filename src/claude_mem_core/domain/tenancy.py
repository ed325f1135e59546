"""The tenancy rule, once: which rows a caller may see.

A caller sees the rows of its team, and only those of its project when its key is
project-scoped. Anything else is "not found" (the answer never says the row exists
elsewhere). :meth:`TenantScope.admits` is the rule for rows already in memory (the
services, the in-memory adapter); the SQL adapters build their ``WHERE`` clause from the
same object (``adapters/sqlalchemy/tenant_filter.py``), and a property test holds the two
to the same answer on every row.

``team_id`` is ``None`` only in an operator's scope (the embedding backfill, the change feed
relay, key listing by an operator): every team, optionally narrowed to one project. A
caller's scope (``Caller.scope``) always names its team.
"""

from __future__ import annotations

from attrs import frozen


@frozen
class TenantScope:
    team_id: str | None
    project_id: str | None = None

    def admits(self, team_id: str | None, project_id: str | None) -> bool:
        """Whether a row of ``team_id`` and ``project_id`` is visible in this scope."""
        return (self.team_id is None or team_id == self.team_id) and (
            self.project_id is None or project_id == self.project_id
        )


EVERY_TENANT = TenantScope(None)

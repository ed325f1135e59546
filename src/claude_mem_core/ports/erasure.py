"""The erasure port: removing stored rows with everything derived from them, the
retention sweep's lookups, and the purge of an erased project (``services/erase.py``,
``services/retention.py``). Part of the storage's unit of work (``uow.erasure``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from attrs import frozen


@frozen(kw_only=True)
class ErasedRows:
    """How many rows an erase removed, by kind. ``passages`` and ``vectors`` are search
    passages and their embeddings; ``sources`` the observations' source links;
    ``statistics`` rows of a purged project's search statistics; ``tombstones`` the
    remembered keys of a purged project's erased events."""

    events: int = 0
    sessions: int = 0
    observations: int = 0
    sources: int = 0
    passages: int = 0
    vectors: int = 0
    jobs: int = 0
    job_events: int = 0
    statistics: int = 0
    tombstones: int = 0

    def __add__(self, other: ErasedRows) -> ErasedRows:
        mine, theirs = self.as_dict(), other.as_dict()
        return ErasedRows(**{name: mine[name] + theirs[name] for name in mine})

    def as_dict(self) -> dict[str, int]:
        return {
            "events": self.events,
            "sessions": self.sessions,
            "observations": self.observations,
            "sources": self.sources,
            "passages": self.passages,
            "vectors": self.vectors,
            "jobs": self.jobs,
            "job_events": self.job_events,
            "statistics": self.statistics,
            "tombstones": self.tombstones,
        }

    @property
    def total(self) -> int:
        return sum(self.as_dict().values())


class ErasureRepository(Protocol):
    """Erasing stored rows and everything derived from them (``services/erase.py``).

    *Derived from an event*: an observation linked to it by a source row (an observation
    made from several events goes when any of them is erased), an observation made by one
    of its generation jobs, and every summary of its session (a summary is made from the
    session's events). An erased observation takes its source links, its search passages
    (the statistics, ``search_stats`` and ``search_terms``, are decremented exactly: the
    passage and token counts and each term's document frequency; the bounds ``min_length``,
    ``max_passages`` and ``max_tf`` stay, still valid, possibly loose) and their vectors.
    Nothing here changes a job's status: the caller does that through ``jobs``.
    """

    async def erase_events(
        self, team_id: str, project_id: str, event_ids: Sequence[str], *, at: datetime
    ) -> ErasedRows:
        """Remove these events of this project (ids of another scope are ignored), the
        observations derived from them, and their generation jobs with the jobs' logs.
        Each erased event that had a ``source_event_id`` is remembered (dated ``at``) by
        its idempotency key, which :meth:`erased_keys` then finds."""

    async def erase_session(
        self, team_id: str, project_id: str, session_id: str, *, at: datetime
    ) -> ErasedRows:
        """Remove the session (of this project; another's is ignored) with its events as
        :meth:`erase_events` does, every observation of the session (memories written
        into it too), the session's other jobs (its summary job) and their logs."""

    async def erased_keys(
        self, team_id: str, project_id: str, idempotency_keys: Sequence[str]
    ) -> set[str]:
        """Which of these event idempotency keys belong to erased events of the project."""

    async def mark_project_deleted(self, team_id: str, project_id: str, *, at: datetime) -> bool:
        """Mark the project deleted (False when it is not the team's, or marked already).
        From the commit on it is missing to reads and refuses writes (see the module
        docstring); its search statistics are removed (its search finds nothing) and its
        queued and processing jobs cancelled, so no worker stores results for it."""

    async def project_deleted_at(self, team_id: str, project_id: str) -> datetime | None:
        """When the project was marked deleted; None if it is not (or does not exist)."""

    async def retained_projects(self) -> Sequence[tuple[str, str, int]]:
        """Unscoped, for the retention sweep: (team id, project id, days) of every live
        project with a retention, in project id order."""

    async def expired_sessions(
        self, team_id: str, project_id: str, *, before: datetime, limit: int
    ) -> Sequence[str]:
        """Ids of the project's sessions with no activity since ``before``: updated before
        it, and no event of theirs received at or after it. Oldest update first."""

    async def expired_loose_events(
        self, team_id: str, project_id: str, *, before: datetime, limit: int
    ) -> Sequence[str]:
        """Ids of the project's events that belong to no session, received before
        ``before``. Oldest first."""

    async def projects_to_purge(self, *, limit: int = 100) -> Sequence[tuple[str, str]]:
        """Unscoped, for resuming purges: (team id, project id) of projects marked
        deleted and not purged yet, oldest mark first."""

    async def purge_project(
        self, team_id: str, project_id: str, *, limit: int, at: datetime
    ) -> ErasedRows:
        """Remove at most ``limit`` rows of one table of a project marked deleted
        (dependents before what they depend on; a passage's vectors go with it) and
        return what went. Once nothing is left but the project row (which stays, marked,
        with its audit trail and revoked keys) it answers all zero and records the project
        as purged at ``at`` (:meth:`projects_to_purge` then leaves it out). Does nothing
        for a project that is not marked deleted."""


__all__ = ["ErasedRows", "ErasureRepository"]

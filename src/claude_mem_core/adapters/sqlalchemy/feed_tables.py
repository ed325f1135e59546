"""The change feed's tables, defined on the schema's metadata by ``tables.py`` (which stays
short by calling :func:`define`):

* ``change_feed`` (revision 0011, ``ports/change_feed.py``): one row per new event, new
  observation and job status change, written by triggers in the writing transaction;
* ``change_feed_horizon`` (revision 0014): the newest position pruned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa


def define(metadata: sa.MetaData, _ts: Callable[..., sa.Column[Any]]) -> tuple[sa.Table, sa.Table]:
    """The two tables on ``metadata``; ``_ts`` makes a timestamp column."""
    # The change feed (revision 0011, ``ports/change_feed.py``): one row per new event, new
    # observation (``summary`` for a session summary) and job status change, written by
    # triggers in the writing transaction. References only, never content. ``txid`` is the
    # writer's PostgreSQL transaction id (NULL on SQLite, whose serial is commit order):
    # readers order by (txid, position) and take only transactions older than every running
    # one, so nothing can commit behind a position already read.
    change_feed = sa.Table(
        "change_feed",
        metadata,
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("txid", sa.BigInteger, nullable=True),
        sa.Column("team_id", sa.Text, nullable=False),
        sa.Column("project_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("row_id", sa.Text, nullable=False),
        _ts("changed_at", default_now=True),
        sa.Index("idx_change_feed_txid_position", "txid", "position"),
        # SQLite: AUTOINCREMENT, so a serial is never reused (commit order stays increasing).
        sqlite_autoincrement=True,
    )

    change_feed_horizon = sa.Table(
        # One row (revision 0014): the newest feed position pruned; a cursor below it may have
        # missed changes.
        "change_feed_horizon",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("txid", sa.BigInteger, nullable=False),
        sa.Column("serial", sa.BigInteger, nullable=False),
        _ts("pruned_at", nullable=True),
    )
    return change_feed, change_feed_horizon

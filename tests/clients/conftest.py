"""Fixtures for the client tests; the helpers they share live in clientkit.py (a unique
module name: every test directory's conftest is importable as plain 'conftest')."""

from clientkit import data_dir, db_url, embedded_data_dir, memory, server, start_server, tenant  # noqa: F401

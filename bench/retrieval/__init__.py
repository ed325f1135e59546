"""Retrieval evaluation on public Claude Code transcripts: ``python -m bench.retrieval.run``."""

"""``python -m claude_mem_worker [--concurrency N]``: the same as ``claude-mem worker``."""

from __future__ import annotations

import sys

from claude_mem_worker.cli import main

if __name__ == "__main__":
    sys.exit(main())

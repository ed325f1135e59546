"""``python -m claude_mem_core.cli``: the same as ``claude-mem``."""

from __future__ import annotations

import sys

from claude_mem_core.cli import main

if __name__ == "__main__":
    sys.exit(main())

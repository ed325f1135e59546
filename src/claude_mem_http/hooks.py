"""``python -m claude_mem_http.hooks <event>``: the hook command installed before the hook
runner moved to :mod:`claude_mem_http.client.hooks`.

Claude Code settings written by an earlier ``claude-mem install claude-code`` run this
module path. Without it those hooks would fail (and the agent's events be dropped) until
the user reinstalls; with it they keep working, and the next install rewrites them to the
new path. Nothing else belongs here.
"""

from __future__ import annotations

import sys

from claude_mem_http.client.hooks import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

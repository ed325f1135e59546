"""The README's embedding example runs as written and finds the fix it describes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_starts_with_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    first_block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert first_block is not None
    lines = [ln for ln in first_block.group(1).splitlines() if ln.strip()]
    assert lines[0].startswith("python -m pip install") and "claude-mem serve" in lines[0]
    assert lines[1].startswith("python -m pip install") and "python -m pytest" in lines[1]


def test_embedding_example_runs(tmp_path: Path) -> None:
    code = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)[0]
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("CLAUDE_MEM_SERVER_PROVIDER", None)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Edited auth/middleware.py" in result.stdout
    assert (tmp_path / "mem.db").exists()

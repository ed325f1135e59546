"""``python -m bench [--quick] …``: storage, HTTP and worker benchmarks with their floors."""

from __future__ import annotations

from bench.harness import main

if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Same as ``podhl-bench``: speed/cost of every loss on the current device (see podhl/bench.py)."""

from podhl.bench import main

if __name__ == "__main__":
    raise SystemExit(main())

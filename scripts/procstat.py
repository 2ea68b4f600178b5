"""What the benchmark scripts read about their own process and machine (Linux ``/proc``): resident memory,
its peak and how to reset that peak, and the load average. Imported by the scripts next to it."""

from __future__ import annotations

import os


def status_kb(key: str) -> int:
    """A ``/proc/self/status`` value in kB (``VmRSS``: resident now, ``VmHWM``: the peak); -1 where absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def reset_peak() -> bool:
    """Reset ``VmHWM`` to the current resident size (Linux ``clear_refs``); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def load_text() -> str:
    """``load 1.23 1.10 0.98`` (1, 5, 15 minutes), or ``load n/a``."""
    try:
        return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load n/a"

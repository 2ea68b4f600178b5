"""OmegaConf resolvers used by the configs (registered by ``podhl.config`` and the CLI before composing)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from omegaconf import OmegaConf

from podhl.errors import ConfigError


def lookup(table, key):
    """``${podhl.lookup:${.table},${.key}}``: ``table[key]``, with a message naming the missing key."""
    if key not in table:
        raise ConfigError(f"no entry for {key!r} in {dict(table)}: set the value explicitly (e.g. model.feat_dim=<n>)")
    return table[key]


def _process_start_time(pid: int) -> float | None:
    """Unix start time of a process (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        btime = next(
            float(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines() if ln.startswith("btime")
        )
        return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, StopIteration, ValueError):
        return None


def run_stamp() -> str:
    """Run-folder stamp, unique per run on a machine and the same for every torchrun rank:
    ``<date>_<time>.<milliseconds>_<pid>`` of this process, or under torchrun (WORLD_SIZE > 1) of the
    rank's parent (the torchrun agent a node's ranks share). ``$PODHL_RUN_STAMP`` if set. Multi-node
    jobs should pass ``hydra.run.dir`` explicitly.
    """
    if os.environ.get("PODHL_RUN_STAMP"):
        return os.environ["PODHL_RUN_STAMP"]
    t, pid = time.time(), os.getpid()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        pid = os.getppid()
        t = _process_start_time(pid) or t
    ms = int((t % 1) * 1000)
    return f"{time.strftime('%Y-%m-%d_%H-%M-%S', time.localtime(t))}.{ms:03d}_{pid}"


def register() -> None:
    OmegaConf.register_new_resolver("podhl.lookup", lookup, replace=True)
    OmegaConf.register_new_resolver("podhl.run_stamp", run_stamp, replace=True, use_cache=True)

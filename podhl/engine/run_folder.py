"""One run folder, one run: a lock held while the run lives, no mixing with another run's results,
and resume checks made before anything in the folder is written.

* The lock is ``<run dir>/.lock`` held with ``flock`` for the life of the process: the OS releases it
  when the process ends, also on ``kill -9``, so a stale lock never blocks.
* A path that cannot be a folder (it or a folder above it is a file) or cannot be written is refused with
  one line naming the key to change (also before Hydra creates it: ``podhl.runs.folder_check``).
* Temporaries of checkpoint writes a killed run left behind (``.last.pt.*.tmp``) are removed when a run
  claims the folder: with the lock held, no live run is writing them.
* A folder holding results (``metrics.json``, ``history.csv``, ``last.pt``) is refused unless
  ``resume=true`` (continue that run: ``last.pt`` must exist, be readable and belong to the same
  experiment), ``resume=auto`` (continue if ``last.pt`` exists, else start over: requeued cluster
  jobs) or ``overwrite=true`` (delete its results, then start over).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from podhl.errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows: no flock; the folder is used without a lock (README "Supported platforms")
    fcntl = None

RESULTS = (
    "metrics.json",
    "history.csv",
    "last.pt",
    "best.pt",
    "analysis.json",
    "features.npz",
    "features.png",
    "tb",
    "init_from.json",  # model.init_from's report
    "eval",  # podhl-eval's results (eval/<name>/)
)
# Parts of the config that define the experiment: a resumed run must match them.
IDENTITY_KEYS = ("task", "dataset", "backbone", "loss", "model", "schedule", "seed")
# Keys that only say how a run started (a resumed run's weights come from last.pt): a run written before they
# existed, or one started from other weights, resumes all the same.
NOT_IDENTITY = ("model.init_from", "model.init_criterion")
RESUME_MODES = (False, True, "auto")
TEMPORARIES = ".*.tmp"  # podhl.engine.records.atomic_write's temporaries: .<name>.<random>.tmp
log = logging.getLogger("podhl")


def check_folder(path: str | Path, key: str) -> None:
    """Raise ConfigError naming ``key`` when ``path`` cannot hold a run: it, or a folder above it, is a file,
    or the folder it would be made in cannot be written (probed by creating a file: permission bits do not
    stop root, a read-only mount does)."""
    path = Path(path).absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"lies under {existing}, which is a file"
        raise ConfigError(f"{key}={path} {where}, not a folder: move the file away or set {key} to a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe.", suffix=".tmp", dir=existing)
    except OSError as err:
        raise ConfigError(
            f"{key}={path}: cannot write in {existing} ({err.strerror or err}); make it writable "
            f"or set {key} to a writable folder"
        ) from None
    os.close(fd)
    Path(probe).unlink(missing_ok=True)  # (rank 0 claiming the folder may have removed it already)


def describe_checkpoint(path: Path) -> str | None:
    """``<path> (epoch 3)`` or ``<path> (epoch 3 and 40 batches of epoch 4)`` for a readable checkpoint, else None."""
    if not Path(path).is_file():
        return None
    try:
        state = read_checkpoint(path, mmap=True)
    except ConfigError:
        return None
    done, mid = int(state["epoch"]), state.get("in_epoch")
    return f"{path} (epoch {done}" + (f" and {mid['batches']} batches of epoch {done + 1})" if mid else ")")


def _leaves(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        return {k: v for key, sub in value.items() for k, v in _leaves(sub, f"{prefix}.{key}").items()}
    return {prefix: value}


def _shown(leaves: dict[str, Any], key: str) -> str:
    return repr(leaves[key]) if key in leaves else "absent"


def _identity(section: Any, key: str) -> Any:
    """A config section without its start-only keys (NOT_IDENTITY)."""
    if not isinstance(section, dict):
        return section
    return {k: v for k, v in section.items() if f"{key}.{k}" not in NOT_IDENTITY}


def identity_mismatch(saved: dict[str, Any], current: dict[str, Any], shown: int = 4) -> str | None:
    """The first config section that differs between a checkpoint's run and this one, with the changed keys
    (``'schedule' differs: schedule.epochs saved 2, now 3``); else None."""
    for key in IDENTITY_KEYS:
        if key in saved and _identity(saved[key], key) != _identity(current.get(key), key):
            old, new = _leaves(_identity(saved[key], key), key), _leaves(_identity(current.get(key), key), key)
            changed = [
                f"{k} saved {_shown(old, k)}, now {_shown(new, k)}"
                for k in dict.fromkeys([*old, *new])
                if _shown(old, k) != _shown(new, k)
            ]
            more = f" (and {len(changed) - shown} more)" if len(changed) > shown else ""
            return f"'{key}' differs: {'; '.join(changed[:shown])}{more}"
    return None


def read_checkpoint(path: Path, map_location="cpu", mmap: bool = False) -> dict[str, Any]:
    """``torch.load`` of a run checkpoint; a damaged file raises ConfigError saying so and what else is there.
    ``mmap=True`` maps the tensors instead of reading them (a check that only needs the config)."""
    import torch

    try:
        state = torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
        if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
            raise ValueError("not a podhl checkpoint")
        return state
    except Exception as err:  # noqa: BLE001 - truncated, empty or foreign files all land here
        best = Path(path).with_name("best.pt")
        advice = "no best.pt is there either"
        if best != Path(path) and best.is_file():
            try:
                epoch = torch.load(best, map_location="cpu", weights_only=False)["epoch"]
                advice = f"best.pt (epoch {epoch}) is readable: copy it over last.pt to resume from that epoch"
            except Exception:  # noqa: BLE001
                advice = "best.pt is damaged too"
        raise ConfigError(
            f"{path} is damaged ({type(err).__name__}: {err}); {advice}, or start over with overwrite=true"
        ) from None


class RunFolder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def results(self) -> list[str]:
        """Result files present; none when all there is comes from a run that failed or was interrupted before
        finishing an epoch (a fixed config may reuse that folder)."""
        found = [name for name in RESULTS if (self.path / name).exists()]
        if found and not {"last.pt", "history.csv"} & set(found) and self._status() in ("failed", "interrupted"):
            return []
        return found

    def _status(self) -> str | None:
        try:
            return json.loads((self.path / "metrics.json").read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            return None

    def claim(self, resume: bool | str, overwrite: bool, config: dict[str, Any]) -> bool:
        """Lock the folder and decide: True = resume from ``last.pt``, False = a fresh run. Raises ConfigError
        (writing nothing) when the folder belongs to a live run or to another run."""
        if resume not in RESUME_MODES:
            raise ConfigError(f"resume must be one of false, true, auto, got {resume!r}")
        check_folder(self.path, "hydra.run.dir")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        last = self.path / "last.pt"
        if resume is True and not last.is_file():
            self.release()
            raise ConfigError(
                f"resume=true but {self.path} holds no last.pt (a typo in hydra.run.dir?); "
                f"point hydra.run.dir at the run to continue"
            )
        if resume and last.is_file():
            try:
                why = identity_mismatch(read_checkpoint(last, mmap=True).get("config", {}), config)
            except ConfigError:
                self.release()
                raise
            if why:
                self.release()
                raise ConfigError(
                    f"resume: {why} from the run in {self.path}; resume with the same settings "
                    f"or start a new run in another folder"
                )
            self._remove_temporaries()
            return True
        found = self.results()
        if found and not (overwrite or resume == "auto"):
            self.release()
            raise ConfigError(
                f"{self.path} already holds another run's results ({', '.join(found)}). Use a new "
                f"hydra.run.dir, resume=true to continue that run, or overwrite=true to replace it"
            )
        for name in [n for n in RESULTS if (self.path / n).exists()]:
            target = self.path / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        self._remove_temporaries()
        return False

    def _remove_temporaries(self) -> None:
        """Delete the half-written files of a killed run's writes (only called with the lock held)."""
        stale = [p for p in self.path.glob(TEMPORARIES) if p.is_file()]
        for tmp in stale:
            tmp.unlink(missing_ok=True)
        if stale:
            log.info("removed %d temporary file(s) a killed run left in %s", len(stale), self.path)

    def _lock(self) -> None:
        if fcntl is None:
            warnings.warn(
                f"no run-folder lock on this platform: nothing stops a second run from writing into {self.path}",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(
                f"{self.path} is in use by a live run (pid {holder}); wait for it, or use another hydra.run.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

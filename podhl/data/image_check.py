"""Up-front check of image files, so one broken file stops a run before epoch 1, not hours into it.

Each file's first bytes must carry a known image signature (JPEG, PNG, GIF, BMP, WebP, TIFF, PPM/PGM):
a cheap header check (a truncated file with a valid header still passes). A folder that passed is
remembered in ``$PODHL_CACHE_DIR/image_checks`` (default ``~/.cache/podhl``) keyed by its file list,
so a 1.2 M-image set is read once, not every run. Bad files stop the run with their names
(:class:`~podhl.errors.DatasetNotFoundError`), or, with ``dataset.skip_bad_images=true``, are left out
with a warning saying how many.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Sequence

from podhl.errors import DatasetNotFoundError

log = logging.getLogger("podhl")
SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


def looks_like_image(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    if head.startswith(SIGNATURES):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    return len(head) >= 2 and head[:1] == b"P" and head[1:2] in b"123456"  # PBM/PGM/PPM


def _cache_file(paths: Sequence[str]) -> Path:
    digest = hashlib.sha1("\n".join(sorted(paths)).encode()).hexdigest()
    root = Path(os.environ.get("PODHL_CACHE_DIR") or Path.home() / ".cache" / "podhl")
    return root / "image_checks" / f"{digest}.ok"


def bad_images(paths: Sequence[str]) -> list[str]:
    """The files among ``paths`` without an image signature (none if this exact file list passed before)."""
    marker = _cache_file(paths)
    if marker.is_file():
        return []
    bad = [p for p in paths if not looks_like_image(p)]
    if not bad:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"{len(paths)} files checked\n")
        except OSError:
            pass
    return bad


def check_image_folder(dataset, name: str, skip_bad: bool = False):
    """Check a torchvision ImageFolder-like dataset's files; drop bad ones if ``skip_bad``, else raise."""
    paths = [p for p, _ in dataset.samples]
    bad = bad_images(paths)
    if not bad:
        return dataset
    listed = "\n  ".join(bad[:10]) + ("\n  ..." if len(bad) > 10 else "")
    if not skip_bad:
        raise DatasetNotFoundError(
            f"{name}: {len(bad)} of {len(paths)} files are not images (no JPEG/PNG/... signature):\n  {listed}\n"
            f"Remove or replace them, or set dataset.skip_bad_images=true to leave them out.")
    keep = set(paths) - set(bad)
    dataset.samples = [s for s in dataset.samples if s[0] in keep]
    dataset.imgs = dataset.samples
    dataset.targets = [t for _, t in dataset.samples]
    log.warning("%s: skipped %d unreadable files of %d (dataset.skip_bad_images=true), e.g. %s",
                name, len(bad), len(paths), bad[0])
    return dataset

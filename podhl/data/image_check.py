"""Data files checked twice: a cheap complete pass before training, and a named error for any sample that still fails.

Up front, every image file: it must exist, start with a known image signature (JPEG, PNG, GIF, BMP, WebP, TIFF,
PPM/PGM) and, for JPEG and PNG, end as the format ends (JPEG: the end-of-image marker in its last 1 KiB; PNG: the
``IEND`` chunk), so a file cut short is found too; a file failing the tail test is decoded once to confirm (trailing
bytes after a complete image are allowed). The result is remembered in ``$PODHL_CACHE_DIR/image_checks`` (default
``~/.cache/podhl``) keyed by every file's path, size and modification time, so a 1.2 M-image set is read once, and a
file changed since is read again. Bad files stop the run with their names (:class:`~podhl.errors.DatasetFormatError`,
exit code 2), or, with ``dataset.skip_bad_images=true``, are left out with a warning saying how many.

Per sample (what a cheap pass cannot see: a file damaged inside, or changed after the check): :func:`read_sample`
turns the decoder's error into :class:`BadSampleError` naming the file, or, with ``skip_bad_images``, warns and
gives the next sample that reads (the batch keeps its size; the choice is deterministic, so resumes replay it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from PIL import Image
from torchvision.datasets import ImageFolder

from podhl.errors import DatasetFormatError

log = logging.getLogger("podhl")
SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
TAIL = 1024  # bytes read at a file's end (our choice: a JPEG's end-of-image marker plus short trailers)
CHECK_VERSION = "2"  # part of the cache key: results of an older, weaker check are not trusted
#: what decoding a damaged file raises (PIL: OSError/SyntaxError/ValueError; torchvision.io: RuntimeError; zlib, struct)
READ_ERRORS = (OSError, ValueError, SyntaxError, RuntimeError, EOFError, struct.error, zlib.error)
T = TypeVar("T")


def signature_problem(head: bytes) -> str | None:
    """Why ``head`` (a file's first 12+ bytes) does not start an image, or None."""
    if head.startswith(SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return None
    if len(head) >= 2 and head[:1] == b"P" and head[1:2] in b"123456":  # PBM/PGM/PPM
        return None
    return "not an image (no JPEG/PNG/GIF/BMP/WebP/TIFF/PPM signature)"


def _tail_problem(head: bytes, tail: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff") and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if head.startswith(b"\x89PNG") and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    return None


def image_problem(path: str | Path) -> str | None:
    """Why the file is not a whole image, judged by its first and last bytes (None: it looks whole)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL))
            tail = f.read()
    except OSError as err:
        return "missing" if isinstance(err, FileNotFoundError) else f"cannot be read ({err.strerror or err})"
    problem = signature_problem(head) or _tail_problem(head, tail)
    if problem and problem.startswith("truncated"):
        try:  # confirm by decoding: a complete image followed by a long trailer is fine
            with Image.open(path) as image:
                image.load()
            return None
        except READ_ERRORS:
            pass
    return problem


def header_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the image's header (no decoding); a file PIL cannot open is named."""
    try:
        with Image.open(path) as image:
            return image.size
    except READ_ERRORS as err:
        raise DatasetFormatError(f"{path}: cannot read the image size ({type(err).__name__}: {err})") from None


def _stamp(path: str) -> str:
    try:
        st = os.stat(path)
        return f"{path}\t{st.st_size}\t{st.st_mtime_ns}"
    except OSError:
        return f"{path}\tmissing"


def cached_check(kind: str, key: Iterable[str], check: Callable[[], list]) -> list:
    """``check()`` (a JSON-able list of problems), remembered under ``kind`` + the ``key`` lines in the cache folder."""
    sha = hashlib.sha1(f"{kind}\n{CHECK_VERSION}\n".encode())
    for line in key:
        sha.update(line.encode() + b"\n")
    digest = sha.hexdigest()
    root = Path(os.environ.get("PODHL_CACHE_DIR") or Path.home() / ".cache" / "podhl")
    marker = root / "image_checks" / f"{digest}.json"
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        pass
    found = check()
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(found))
        os.replace(tmp, marker)
    except OSError:
        pass
    return found


def bad_images(paths: Sequence[str], workers: int = 8) -> list[tuple[str, str]]:
    """(path, why) of the files among ``paths`` that are not whole images (cached per paths, sizes and mtimes)."""
    paths = [str(p) for p in paths]
    stamps = _parallel(_stamp, paths, workers)

    def check() -> list:
        return [[p, why] for p, why in zip(paths, _parallel(image_problem, paths, workers), strict=True) if why]

    return [tuple(b) for b in cached_check("images", sorted(stamps), check)]


def _parallel(fn: Callable[[str], T], items: Sequence[str], workers: int, chunk: int = 2048) -> list[T]:
    """``[fn(x) for x in items]`` on threads, in chunks (file reads release the GIL; network file systems gain most)."""
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    with ThreadPoolExecutor(max(1, min(workers, len(chunks)))) as pool:
        return [y for part in pool.map(lambda c: [fn(x) for x in c], chunks) for y in part]


def report_bad(name: str, bad: Sequence[tuple[str, str]], total: int, skip_bad: bool, what: str = "files") -> None:
    """Stop with the bad files named (``skip_bad`` false), else warn how many are left out."""
    if not bad:
        return
    listed = "\n  ".join(f"{p}: {why}" for p, why in bad[:10]) + ("\n  ..." if len(bad) > 10 else "")
    if not skip_bad:
        raise DatasetFormatError(
            f"{name}: {len(bad)} of {total} {what} cannot be used:\n  {listed}\n"
            f"Remove or replace them, or set dataset.skip_bad_images=true to leave them out."
        )
    log.warning(
        "%s: skipped %d unreadable %s of %d (dataset.skip_bad_images=true), e.g. %s: %s",
        name,
        len(bad),
        what,
        total,
        *bad[0],
    )


def check_image_folder(dataset, name: str, skip_bad: bool = False):
    """Check a torchvision ImageFolder-like dataset's files; drop bad ones if ``skip_bad``, else raise."""
    paths = [p for p, _ in dataset.samples]
    bad = bad_images(paths)
    dataset.skip_bad = skip_bad
    report_bad(name, bad, len(paths), skip_bad)
    if bad:
        drop = {p for p, _ in bad}
        dataset.samples = [s for s in dataset.samples if s[0] not in drop]
        dataset.imgs = dataset.samples
        dataset.targets = [t for _, t in dataset.samples]
    return dataset


# ------------------------------------------------------------------------------------------------ per sample


class BadSampleError(DatasetFormatError):
    """A sample whose file fails to read during training; the message names the file."""

    def __init__(self, message: str) -> None:
        # a DataLoader worker's error comes back as type(text with the worker's traceback): keep our own line
        marker = f"{type(self).__name__}: "
        if message.startswith("Caught ") and marker in message:
            message = message.rsplit(marker, 1)[1].strip()
        super().__init__(message)


MAX_SKIPS = 100  # our choice: more unreadable samples in a row than this means the data is broken, not a file
_warned: set[str] = set()


def read_sample(
    size: int, index: int, read: Callable[[int], T], name: Callable[[int], str], skip_bad: bool = False
) -> tuple[int, T]:
    """``(index, read(index))``; a read that fails raises :class:`BadSampleError` naming ``name(index)``, or, with
    ``skip_bad``, is warned about (once per file) and the next index that reads is used instead."""
    if not -size <= index < size:
        raise IndexError(index)  # the end of a sequence (``for x in dataset``)
    index %= size
    for step in range(min(size, MAX_SKIPS)):
        i = (index + step) % size
        try:
            return i, read(i)
        except READ_ERRORS as err:
            where = name(i)
            if not skip_bad:
                raise BadSampleError(
                    f"{where} cannot be read ({type(err).__name__}: {err}); replace or remove it, or "
                    f"set dataset.skip_bad_images=true to use the next sample instead"
                ) from err
            if where not in _warned:
                _warned.add(where)
                log.warning(
                    "skipped %s (%s: %s; dataset.skip_bad_images=true): the next sample is used instead",
                    where,
                    type(err).__name__,
                    err,
                )
    raise BadSampleError(
        f"{min(size, MAX_SKIPS)} samples in a row from {name(index)} cannot be read: the data is "
        f"damaged beyond single files"
    )


class CheckedImageFolder(ImageFolder):
    """torchvision's ImageFolder whose unreadable files raise :class:`BadSampleError` naming them (or, with
    ``skip_bad``, give the next sample); :func:`check_image_folder` sets ``skip_bad``."""

    skip_bad = False

    def __getitem__(self, index: int):
        index, image = read_sample(
            len(self.samples),
            index,
            lambda i: self.loader(self.samples[i][0]),
            lambda i: self.samples[i][0],
            self.skip_bad,
        )
        target = self.samples[index][1]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

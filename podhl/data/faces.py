"""Face data: aligned training faces and face-verification pairs (HL §IV-G, Table VII).

Training sets (``dataset=casia_webface`` / ``casia_webface_rec``), in the two forms researchers have::

    <root>/<identity>/*.jpg            one folder per identity (aligned faces; class = sorted folder index)
    <root>/train.rec, train.idx        insightface's packed form (faces_webface_112x112), read without mxnet
    <root>/property                    (optional) "classes,H,W", e.g. "10572,112,112"

Verification sets (the ``verification`` task)::

    lfw.bin, cfp_fp.bin, agedb_30.bin  insightface: pickle (list of 2P encoded images, list of P is-same flags)
    pairs.txt + <images>/<name>/<name>_<4-digit n>.jpg   the classic LFW form (View 2, 10 folds × 600 pairs)

Images: RGB, (x − 127.5)/128 (SphereFace's Caffe data layer: mean 127.5, scale 1/128), random
horizontal flip for training. The model's size is ``image_size`` = (height, width): an image whose
height matches and that is wider is cropped to the centre columns, so insightface's 112×112 faces
become SphereFace's 112×96 by keeping columns 8:104 — the two alignment templates differ exactly by
x + 8 (insightface ``face_preprocess.py``: ``src[:, 0] += 8.0``), so this is the SphereFace
alignment, with no resampling. Any other size is resized (bilinear).
"""

from __future__ import annotations

import io
import logging
import pickle
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from podhl.data.bundle import DataBundle, VerificationSet, with_transform
from podhl.data.image_check import (
    READ_ERRORS,
    CheckedImageFolder,
    cached_check,
    check_image_folder,
    read_sample,
    report_bad,
    signature_problem,
)
from podhl.data.recordio import HEADER, IndexedRecordReader
from podhl.errors import DatasetFormatError, DatasetNotFoundError

log = logging.getLogger("podhl")

# (x − 127.5)/128 written in the [0, 1] units every podhl normalization uses: (x/255 − mean)/std
FACE_MEAN = (127.5 / 255.0,) * 3
FACE_STD = (128.0 / 255.0,) * 3
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

FOLDER_LAYOUT = "  <root>/<identity>/<image>.jpg   (aligned faces, e.g. 112x96 or 112x112; one folder per identity)"
REC_LAYOUT = (
    "  <root>/train.rec\n  <root>/train.idx\n  <root>/property   (optional: 'classes,height,width', "
    "e.g. insightface's faces_webface_112x112)"
)
BIN_LAYOUT = "  <file>.bin: insightface's pickle (list of 2P encoded images, list of P is-same flags), e.g. lfw.bin"
PAIRS_LAYOUT = (
    "  pairs.txt: header '10<TAB>300', then 'name<TAB>n1<TAB>n2' (same) "
    "and 'name1<TAB>n1<TAB>name2<TAB>n2' (different)\n"
    "  <images>/<name>/<name>_<n as 4 digits>.jpg   (aligned faces)"
)


def image_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """``112`` → (112, 112); ``[112, 96]`` → (112, 96)."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def fit_face(image: Image.Image, size: Sequence[int]) -> np.ndarray:
    """RGB uint8 (H, W, 3) of the model's size: kept, centre columns cropped (112×112 → 112×96), or resized."""
    h, w = image_hw(size)
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    if (height, width) != (h, w):
        if height == h and width > w:
            left = (width - w) // 2
            image = image.crop((left, 0, left + w, h))
        else:
            image = image.resize((w, h), Image.BILINEAR)
    return np.array(image, dtype=np.uint8)  # a writable copy (torch.from_numpy)


def decode_face(data: Any, size: Sequence[int]) -> np.ndarray:
    """Encoded image bytes (``bytes``, ``bytearray`` or a uint8 numpy array, as insightface's packs hold)
    → RGB uint8."""
    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    with Image.open(io.BytesIO(raw)) as image:
        return fit_face(image, size)


class FaceTransform:
    """PIL image → normalized float tensor (3, H, W); random horizontal flip (p = 0.5) when ``augment``."""

    def __init__(self, size: Sequence[int], augment: bool) -> None:
        self.size, self.augment = image_hw(size), augment

    def __call__(self, image: Image.Image) -> torch.Tensor:
        x = torch.from_numpy(fit_face(image, self.size)).permute(2, 0, 1)
        if self.augment and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return (x.float() - 127.5) / 128.0


class FaceRecordDataset(Dataset):
    """The image records of an indexed RecordIO pack: (normalized image, class). A record that fails to read
    raises an error naming the file and key (or, with ``skip_bad``, gives the next record)."""

    def __init__(
        self,
        reader: IndexedRecordReader,
        keys: Sequence[int],
        num_classes: int,
        transform: Callable[[Image.Image], torch.Tensor],
        skip_bad: bool = False,
    ) -> None:
        self.reader, self.keys, self.num_classes, self.transform = reader, list(keys), num_classes, transform
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.keys)

    def _read(self, index: int) -> tuple[Image.Image, int]:
        record = self.reader.read(self.keys[index])
        label = int(record.labels[0])  # flag 0: the scalar label; flag ≥ 1: the first of the labels (insightface)
        if not 0 <= label < self.num_classes:
            raise ValueError(
                f"label {label} is outside 0..{self.num_classes - 1} (the class count of 'property' / the header)"
            )
        with Image.open(io.BytesIO(record.payload)) as image:
            image.load()
            return image, label

    def __getitem__(self, index: int):
        _, (image, label) = read_sample(
            len(self.keys), index, self._read, lambda i: f"{self.reader.rec_path} record {self.keys[i]}", self.skip_bad
        )
        return self.transform(image), label


class _NoImages(Dataset):
    """CASIA-WebFace has no test split (HL Table I: 0 test samples); faces are judged on verification pairs."""

    def __len__(self) -> int:
        return 0

    def __getitem__(self, index: int):
        raise IndexError(index)


ROOT_HINT = "Set dataset.root=<dir> to point elsewhere (CASIA-WebFace has no automatic download)."


def _require(path: Path, what: str, layout: str, is_dir: bool = False, hint: str = "") -> None:
    if not (path.is_dir() if is_dir else path.is_file()):
        kind = "folder" if is_dir else "file"
        raise DatasetNotFoundError(
            f"{what} not found: expected the {kind} {path.resolve()}.\n"
            f"Expected layout:\n{layout}" + (f"\n{hint}" if hint else "")
        )


def face_folder(
    root: str, image_size: Sequence[int] = (112, 96), augment: bool = True, skip_bad_images: bool = False
) -> DataBundle:
    """Aligned faces in ``<root>/<identity>/*.jpg``; classes follow the sorted folder names. Every file is checked
    up front (:func:`~podhl.data.image_check.check_image_folder`)."""
    base = Path(root)
    _require(base, "face folder", FOLDER_LAYOUT, is_dir=True, hint=ROOT_HINT)
    size = image_hw(image_size)
    try:
        train = CheckedImageFolder(str(base), transform=FaceTransform(size, augment))
    except FileNotFoundError as err:
        raise DatasetNotFoundError(
            f"no identity folders with images under {base.resolve()} ({err}).\nExpected layout:\n{FOLDER_LAYOUT}"
        ) from None
    check_image_folder(train, f"face folder {base}", skip_bad_images)
    return DataBundle(
        train,
        _NoImages(),
        num_classes=len(train.classes),
        in_chans=3,
        image_size=size,
        train_eval=with_transform(train, FaceTransform(size, False)),
    )


def rec_images(reader: IndexedRecordReader, property_path: Path) -> tuple[list[int], int]:
    """(image keys, class count) of an insightface pack: header record 0 = [N + 1, N + 1 + K] gives keys
    1..N (and K); without it every key is an image. The class count comes from ``property`` when present."""
    keys, classes = None, None
    if 0 in reader.index:
        head = reader.read(0)
        if head.flag > 0:
            end = int(head.labels[0])
            keys = list(range(1, end))
            if head.flag > 1:
                classes = int(head.labels[1]) - end
            missing = [k for k in (1, end - 1) if k not in reader.index]
            if missing or end < 2:
                raise DatasetFormatError(
                    f"{reader.rec_path}: header record 0 announces images 1..{end - 1}, "
                    f"but {reader.idx_path} lacks key(s) {missing or [1]}"
                )
    if keys is None:
        keys = sorted(reader.index)
    if property_path.is_file():
        fields = property_path.read_text().strip().split(",")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            raise DatasetFormatError(
                f"{property_path}: expected one line 'classes,height,width', got {property_path.read_text()!r}"
            )
        classes = int(fields[0])
    if classes is None:  # neither header nor property: read every label once
        classes = 1 + max(int(reader.read(k).labels[0]) for k in keys)
    return keys, classes


def check_records(reader: IndexedRecordReader, keys: Sequence[int], classes: int) -> list[tuple[str, str]]:
    """(record, why) of the image records that cannot be used, from a cheap complete pass (cached per the sizes and
    mtimes of both files): framing (offsets inside the file, magic words, lengths), the IRHeader, the label in
    0..classes−1, an image signature at the payload's start. Decoding errors are caught per sample."""

    def check() -> list:
        bad = []
        for key, problem, first in reader.scan(keys):
            if problem is None:
                if len(first) < HEADER.size:
                    problem = f"{len(first)} bytes, shorter than the {HEADER.size}-byte IRHeader"
                else:
                    flag, label = HEADER.unpack_from(first)[:2]
                    start = HEADER.size + 4 * flag
                    if flag > 0 and len(first) >= start:
                        label = float(np.frombuffer(first[HEADER.size : HEADER.size + 4], "<f4")[0])
                    if not (np.isfinite(label) and label == int(label) and 0 <= label < classes):
                        problem = (
                            f"label {label:g} is outside 0..{classes - 1} (the class count of 'property' / the header)"
                        )
                    elif len(first) >= start + 12:
                        problem = signature_problem(first[start : start + 12])
            if problem:
                bad.append([f"{reader.rec_path} record {key}", problem])
        return bad

    stamps = [f"{p}\t{p.stat().st_size}\t{p.stat().st_mtime_ns}" for p in (reader.rec_path, reader.idx_path)]
    return [tuple(b) for b in cached_check("records", [*stamps, str(classes), str(len(keys)), str(keys[:1])], check)]


def face_rec(
    root: str, image_size: Sequence[int] = (112, 96), augment: bool = True, skip_bad_images: bool = False
) -> DataBundle:
    """insightface's packed training set: ``<root>/train.rec`` + ``train.idx`` (+ ``property``); every record's
    framing, header, label and image signature are checked up front (:func:`check_records`)."""
    base = Path(root)
    for name in ("train.rec", "train.idx"):
        _require(base / name, f"packed face set ({name})", REC_LAYOUT, hint=ROOT_HINT)
    reader = IndexedRecordReader(base / "train.rec", base / "train.idx")
    keys, classes = rec_images(reader, base / "property")
    bad = check_records(reader, keys, classes)
    report_bad(f"packed face set {base}", bad, len(keys), skip_bad_images, what="records")
    if bad:
        drop = {name for name, _ in bad}
        keys = [k for k in keys if f"{reader.rec_path} record {k}" not in drop]
    size = image_hw(image_size)
    train = FaceRecordDataset(reader, keys, classes, FaceTransform(size, augment), skip_bad_images)
    return DataBundle(
        train,
        _NoImages(),
        num_classes=classes,
        in_chans=3,
        image_size=size,
        train_eval=with_transform(train, FaceTransform(size, False)),
    )


# ---------------------------------------------------------------------------------------- verification pairs


def _decode_all(
    items: Sequence[Any],
    decode: Callable[[Any], np.ndarray],
    workers: int,
    desc: str,
    progress: bool,
    name: Callable[[int], str],
) -> torch.Tensor:
    """Decode every item (threads: PIL releases the GIL) into a uint8 (N, 3, H, W) tensor; an item that does not
    decode stops with ``name(i)`` in the message."""

    def one(i: int) -> np.ndarray:
        try:
            return decode(items[i])
        except READ_ERRORS + (TypeError,) as err:
            raise DatasetFormatError(f"{name(i)} does not decode as an image ({type(err).__name__}: {err})") from None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        arrays = list(
            tqdm(
                pool.map(one, range(len(items))),
                total=len(items),
                desc=desc,
                leave=False,
                disable=None if progress else True,
            )
        )
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _pairs_set(name: str, images: torch.Tensor, issame: Iterable[bool], source: str) -> VerificationSet:
    return VerificationSet(name, images, np.asarray(list(issame), dtype=bool), FACE_MEAN, FACE_STD, source)


def load_bin(
    path: str | Path,
    image_size: Sequence[int] = (112, 96),
    name: str | None = None,
    workers: int = 4,
    progress: bool = False,
) -> VerificationSet:
    """insightface's ``.bin``: ``pickle.dump((bins, issame_list))``, pair i = ``bins[2i]``, ``bins[2i+1]``.

    The published files are Python-2 pickles: a ``UnicodeDecodeError`` retries with ``encoding='bytes'``
    (as insightface's ``verification.py`` does). Only open files you trust: unpickling runs code."""
    path = Path(path)
    name = name or path.stem
    _require(path, f"verification set '{name}'", BIN_LAYOUT)
    with path.open("rb") as fh:
        try:
            try:
                content = pickle.load(fh)
            except UnicodeDecodeError:
                fh.seek(0)
                content = pickle.load(fh, encoding="bytes")
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            AttributeError,
            ImportError,
            IndexError,
            KeyError,
            MemoryError,
        ) as err:  # what unpickling a damaged or foreign file raises
            raise DatasetFormatError(
                f"{path} is not a readable pickle ({type(err).__name__}: {err}); expected:\n{BIN_LAYOUT}"
            ) from None
    if not (isinstance(content, (tuple, list)) and len(content) == 2):
        raise DatasetFormatError(
            f"{path}: expected a pickled pair (images, is-same list), got {type(content).__name__}"
        )
    bins, issame = list(content[0]), [bool(s) for s in content[1]]
    if len(bins) % 2:
        raise DatasetFormatError(
            f"{path}: {len(bins)} images, an odd count: images 2i and 2i+1 form pair i, "
            f"so a .bin must hold an even number of images"
        )
    if len(bins) != 2 * len(issame):
        raise DatasetFormatError(
            f"{path}: {len(bins)} images form {len(bins) // 2} pairs, but the is-same list has {len(issame)} entries"
        )
    images = _decode_all(
        bins,
        lambda b: decode_face(b, image_size),
        workers,
        f"decoding {path.name}",
        progress,
        lambda i: f"{path}: image {i} (pair {i // 2 + 1})",
    )
    return _pairs_set(name, images, issame, str(path))


def read_pairs_txt(path: str | Path) -> list[tuple[str, int, str, int, bool]]:
    """LFW's ``pairs.txt``: (name1, n1, name2, n2, same) per pair, in file order (View 2: 10 folds of 600)."""
    path = Path(path)
    lines = [(n, line.split()) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    header: list[int] = []
    if lines and len(lines[0][1]) <= 2 and all(f.isdigit() for f in lines[0][1]):
        header = [int(f) for f in lines.pop(0)[1]]
    pairs = []
    for n, fields in lines:
        try:
            if len(fields) == 3:
                pairs.append((fields[0], int(fields[1]), fields[0], int(fields[2]), True))
            elif len(fields) == 4:
                pairs.append((fields[0], int(fields[1]), fields[2], int(fields[3]), False))
            else:
                raise ValueError
        except ValueError:
            raise DatasetFormatError(
                f"{path}, line {n}: expected 'name n1 n2' or 'name1 n1 name2 n2', got {' '.join(fields)!r}"
            ) from None
    if len(header) == 2 and len(pairs) != 2 * header[0] * header[1]:
        raise DatasetFormatError(
            f"{path}: the header announces {header[0]} sets × {header[1]} same + {header[1]} "
            f"different pairs = {2 * header[0] * header[1]}, but the file lists {len(pairs)}"
        )
    return pairs


def _lfw_image(images: Path, name: str, number: int) -> Path:
    stem = images / name / f"{name}_{number:04d}"
    for ext in IMAGE_EXTENSIONS:
        if stem.with_suffix(ext).is_file():
            return stem.with_suffix(ext)
    return stem.with_suffix(".jpg")


def load_pairs(
    pairs_path: str | Path,
    images: str | Path,
    image_size: Sequence[int] = (112, 96),
    name: str = "lfw",
    workers: int = 4,
    progress: bool = False,
) -> VerificationSet:
    """The classic LFW form: ``pairs.txt`` + ``<images>/<name>/<name>_<n:04d>.jpg`` (aligned faces)."""
    pairs_path, images = Path(pairs_path), Path(images)
    _require(pairs_path, f"verification set '{name}' (pairs file)", PAIRS_LAYOUT)
    _require(images, f"verification set '{name}' (image folder)", PAIRS_LAYOUT, is_dir=True)
    pairs = read_pairs_txt(pairs_path)
    files = [_lfw_image(images, n, k) for a, i, b, j, _ in pairs for n, k in ((a, i), (b, j))]
    missing = [(k // 2, f) for k, f in enumerate(files) if not f.is_file()]
    if missing:
        pair, first = missing[0]
        raise DatasetNotFoundError(
            f"{pairs_path}: pair {pair + 1} names the image {first}, which does not exist "
            f"({len(missing)} missing in all).\nExpected layout:\n{PAIRS_LAYOUT}"
        )

    def decode(file: Path) -> np.ndarray:
        with Image.open(file) as image:
            return fit_face(image, image_size)

    stacked = _decode_all(
        files,
        decode,
        workers,
        f"decoding {images.name}",
        progress,
        lambda i: f"{files[i]} (pair {i // 2 + 1} of {pairs_path})",
    )
    return _pairs_set(name, stacked, (p[4] for p in pairs), f"{pairs_path} + {images}")


def standin_pairs(bundle: DataBundle, name: str, num_pairs: int = 20, seed: int = 0) -> VerificationSet:
    """SYNTHETIC stand-in pairs for smoke runs: two different stand-in test images per pair and alternating
    same/different labels that carry no signal (like the stand-in's random class labels: chance accuracy).
    It runs the real embedding and evaluation code; its numbers mean nothing."""
    source = bundle.test
    images = source.images
    g = torch.Generator().manual_seed(seed)
    first = torch.randint(0, len(images), (num_pairs,), generator=g)
    other = (first + 1 + torch.randint(0, max(len(images) - 1, 1), (num_pairs,), generator=g)) % len(images)
    issame = np.arange(num_pairs) % 2 == 0
    stacked = torch.stack([images[first], images[other]], 1).flatten(0, 1)
    return VerificationSet(
        name,
        stacked,
        issame,
        source.mean.flatten().tolist(),
        source.std.flatten().tolist(),
        "SYNTHETIC stand-in (smoke run)",
    )


FORMATS = ("bin", "pairs")


def check_verification_files(
    name: str, fmt: str, path: str | Path, images: str | Path | None = None, hint: str = ""
) -> None:
    """Stop before training if a configured verification set's files are missing (names paths and layouts)."""
    if fmt not in FORMATS:
        raise DatasetFormatError(f"verification set '{name}': format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "bin":
        _require(Path(path), f"verification set '{name}'", BIN_LAYOUT, hint=hint)
    else:
        _require(Path(path), f"verification set '{name}' (pairs file)", PAIRS_LAYOUT, hint=hint)
        if images is None:
            raise DatasetFormatError(
                f"verification set '{name}': format 'pairs' needs the image folder (images: <dir>)"
            )
        _require(Path(images), f"verification set '{name}' (image folder)", PAIRS_LAYOUT, is_dir=True, hint=hint)


def load_verification_set(
    name: str,
    fmt: str,
    path: str | Path,
    images: str | Path | None,
    image_size: Sequence[int],
    workers: int = 4,
    progress: bool = False,
) -> VerificationSet:
    """One configured set: ``bin`` (insightface) or ``pairs`` (LFW's pairs.txt + image folder)."""
    check_verification_files(name, fmt, path, images)
    if fmt == "bin":
        return load_bin(path, image_size, name, workers, progress)
    return load_pairs(path, images, image_size, name, workers, progress)

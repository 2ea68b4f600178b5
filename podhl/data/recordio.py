"""Read MXNet's indexed RecordIO (insightface's ``train.rec`` + ``train.idx``) without mxnet.

What is read, and nothing else (dmlc-core ``include/dmlc/recordio.h``, mxnet ``python/mxnet/recordio.py``):

* ``.idx``: text, one ``<key>\\t<byte offset>`` line per record (the offset of its magic word).
* ``.rec``, per record at that offset: ``uint32 magic = 0xCED7230A``, ``uint32 lrec`` with
  ``length = lrec & (2^29 − 1)`` and ``cflag = lrec >> 29``, then ``length`` bytes, then zero padding
  to a multiple of 4; little-endian. cflag 0 is a whole record; 1/2/3 are the start/middle/end of a
  record that was split where the magic word occurred 4-aligned in its payload: the pieces are joined
  with the magic word between them (dmlc's ``RecordIOReader``).
* A record's bytes start with mxnet's ``IRHeader``, struct ``<IfQQ`` (24 bytes): ``flag`` (uint32),
  ``label`` (float32), ``id``, ``id2`` (uint64). ``flag`` > 0 means ``flag`` float32 labels follow the
  header (and ``label`` is 0); the rest is the payload (an encoded image, or nothing).

insightface's face packs (``face2rec2.py``): record 0 is a meta header with labels
``[N + 1, N + 1 + K]``: images are keys 1..N and identities K; each image record carries its class
(0..K−1) as the scalar ``label`` (flag 0) or as the first of its labels (flag ≥ 1); keys N+1..N+K are
per-identity records with empty payloads. ``property`` (a text file ``K,H,W``) gives the class count.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from podhl.errors import DatasetFormatError

MAGIC = 0xCED7230A
HEADER = struct.Struct("<IfQQ")  # IRHeader: flag, label, id, id2
_LENGTH_MASK = (1 << 29) - 1


class RecordIOError(DatasetFormatError):
    """A ``.rec``/``.idx`` pair that does not follow the format; the message names the file and offset."""


@dataclass
class Record:
    flag: int
    labels: np.ndarray  # float32: (1,) the scalar label when flag == 0, else the ``flag`` labels
    id: int
    id2: int
    payload: bytes


def unpack(data: bytes) -> Record:
    """Split a record's bytes into mxnet's IRHeader, its labels and the payload (``mx.recordio.unpack``)."""
    if len(data) < HEADER.size:
        raise RecordIOError(f"record of {len(data)} bytes is shorter than the {HEADER.size}-byte IRHeader")
    flag, label, id_, id2 = HEADER.unpack_from(data)
    body = data[HEADER.size :]
    if flag > 0:
        if len(body) < 4 * flag:
            raise RecordIOError(f"record header announces {flag} labels but only {len(body)} bytes follow")
        return Record(flag, np.frombuffer(body[: 4 * flag], "<f4").copy(), id_, id2, body[4 * flag :])
    return Record(0, np.array([label], np.float32), id_, id2, body)


def read_index(idx_path: str | Path) -> dict[int, int]:
    """``.idx`` → {key: byte offset}."""
    index = {}
    with open(idx_path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            try:
                index[int(parts[0])] = int(parts[1])
            except (IndexError, ValueError):
                raise RecordIOError(
                    f"{idx_path}, line {n}: expected '<key>\\t<offset>', got {line.rstrip()!r}"
                ) from None
    return index


class IndexedRecordReader:
    """Random access to the records of a ``.rec`` file by the keys of its ``.idx``.

    The file handle is opened lazily per process, so a reader can be handed to DataLoader workers."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path) -> None:
        self.rec_path, self.idx_path = Path(rec_path), Path(idx_path)
        self.index = read_index(self.idx_path)
        self._fh = None
        self._pid = None

    def __getstate__(self):
        return {**self.__dict__, "_fh": None, "_pid": None}

    def keys(self) -> list[int]:
        return list(self.index)

    def _file(self):
        if self._fh is None or self._pid != os.getpid():
            self._fh = open(self.rec_path, "rb")
            self._pid = os.getpid()
        return self._fh

    def read_bytes(self, key: int) -> bytes:
        """The record's bytes (IRHeader + labels + payload), split records joined."""
        try:
            offset = self.index[key]
        except KeyError:
            raise RecordIOError(f"{self.idx_path} has no key {key}") from None
        fh = self._file()
        fh.seek(offset)
        pieces = []
        while True:
            head = fh.read(8)
            if len(head) < 8:
                raise RecordIOError(f"{self.rec_path}: truncated record at offset {fh.tell() - len(head)} (key {key})")
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                raise RecordIOError(
                    f"{self.rec_path}: no RecordIO magic word at offset {fh.tell() - 8} (key {key}); "
                    f"is {self.idx_path.name} the index of this file?"
                )
            length, cflag = lrec & _LENGTH_MASK, lrec >> 29
            data = fh.read(length)
            if len(data) < length:
                raise RecordIOError(f"{self.rec_path}: record of key {key} is cut short")
            fh.seek((-length) % 4, os.SEEK_CUR)
            pieces.append(data)
            if cflag in (0, 3):  # whole record, or the last piece of a split one
                break
        return struct.pack("<I", MAGIC).join(pieces)

    def scan(self, keys: Iterable[int], head: int = 256) -> Iterator[tuple[int, str | None, bytes]]:
        """The framing of each record, walked without reading payloads: ``(key, problem or None, first bytes)``
        with up to ``head`` bytes of the record (its first piece). Cheap: a few small reads per record."""
        size = self.rec_path.stat().st_size
        with open(self.rec_path, "rb", buffering=0) as fh:  # unbuffered: reads only the bytes asked for
            for key in keys:
                offset = self.index.get(key)
                if offset is None:
                    yield key, f"{self.idx_path.name} has no key {key}", b""
                    continue
                first, problem = b"", None
                while True:
                    if offset + 8 > size:
                        problem = (
                            f"offset {offset} is past the end of the file ({size} bytes): truncated .rec or wrong .idx"
                        )
                        break
                    fh.seek(offset)
                    magic, lrec = struct.unpack("<II", fh.read(8))
                    if magic != MAGIC:
                        problem = (
                            f"no RecordIO magic word at offset {offset}; "
                            f"is {self.idx_path.name} the index of this file?"
                        )
                        break
                    length, cflag = lrec & _LENGTH_MASK, lrec >> 29
                    if offset + 8 + length > size:
                        problem = f"record at offset {offset} is cut short by the end of the file ({size} bytes)"
                        break
                    if not first:
                        first = fh.read(min(length, head))
                    offset += 8 + length + (-length) % 4
                    if cflag in (0, 3):
                        break
                yield key, problem, first

    def read(self, key: int) -> Record:
        return unpack(self.read_bytes(key))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

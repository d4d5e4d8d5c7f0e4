"""Hostile files for the tests of the readers and of the command line: malformed
safetensors headers, a pickle that would run a command when unpickled, and a small
PNG claiming a decompression bomb's size."""

from __future__ import annotations

import json
import os
import pickle
import struct
import zlib
from pathlib import Path

W = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}


def safetensors_file(path: Path, header=None, data=bytes(16), trailing=b"", raw=None) -> Path:
    """A safetensors file of ``header`` (or the ``raw`` header bytes), ``data`` and
    ``trailing`` bytes after them."""
    h = raw if raw is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data + trailing)
    return path


HOSTILE_SAFETENSORS = {
    "overlapping-ranges": dict(header={"w": W, "b": W}),
    "duplicate-keys": dict(
        raw=b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},'
        b'"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
    ),
    "trailing-garbage": dict(header={"w": W}, trailing=b"TRAILING GARBAGE"),
    "shape-string": dict(header={"w": {**W, "shape": "4"}}),
    "shape-float": dict(header={"w": {**W, "shape": [4.7]}}),
    "shape-bool": dict(header={"w": {**W, "shape": [True]}}),
    "shape-negative": dict(header={"w": {**W, "shape": [-4]}}),
    "shape-overflow": dict(header={"w": {**W, "shape": [2**32, 2**32]}}),
    "offsets-string": dict(header={"w": {**W, "data_offsets": ["0", "16"]}}),
    "gap": dict(header={"w": {**W, "shape": [2], "data_offsets": [8, 16]}}),
    "metadata-not-object": dict(header={"__metadata__": "x", "w": W}),
    "metadata-not-strings": dict(header={"__metadata__": {"a": 1}, "w": W}),
    "header-list": dict(raw=b"[1, 2]"),
    "header-null": dict(raw=b"null"),
    "header-number": dict(raw=b"3"),
    "deep-json": dict(raw=b"[" * 100000 + b"]" * 100000),
    "utf16-header": dict(raw=json.dumps({"w": W}).encode("utf-16")),
    "not-json": dict(raw=b"\xff\xfe junk"),
    "unknown-dtype": dict(header={"w": {**W, "dtype": "Q7"}}),
}


class _Touch:
    """Unpickling it runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_pickle(path: Path, marker: Path) -> Path:
    """A ``.pt``-looking pickle that creates ``marker`` if anything unpickles it."""
    path.write_bytes(pickle.dumps({"weight": _Touch(marker)}))
    return path


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG of a few bytes whose header claims ``width`` x ``height`` grey pixels
    (a decompression bomb to any reader that believes it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b""))
    return path

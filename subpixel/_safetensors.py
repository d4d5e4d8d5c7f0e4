"""A small reader/writer for the safetensors format (https://huggingface.co/docs/safetensors):
an 8-byte little-endian header length, a JSON header (dtype, shape and byte range of
each tensor, plus optional string metadata), then the raw bytes.  Plain data only:
nothing in a file is ever executed.  NumPy in, NumPy out; no extra dependency."""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np

_DTYPES = {
    "BOOL": np.bool_,
    "U8": np.uint8,
    "I8": np.int8,
    "U16": np.uint16,
    "I16": np.int16,
    "U32": np.uint32,
    "I32": np.int32,
    "U64": np.uint64,
    "I64": np.int64,
    "F16": np.float16,
    "F32": np.float32,
    "F64": np.float64,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 2**20


def save(
    path: str | os.PathLike, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> None:
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    blobs = []
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        if array.dtype not in _NAMES:
            raise ValueError(f"safetensors cannot store dtype {array.dtype} (tensor {name!r})")
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": _NAMES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # align the data
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)


def load(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file; ``ValueError`` if it is not one."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{os.fspath(path)} is not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > min(_MAX_HEADER, len(blob) - 8):
        raise ValueError(f"{os.fspath(path)} is not a safetensors file (bad header length)")
    try:
        header = json.loads(blob[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{os.fspath(path)} is not a safetensors file (header is not JSON)"
        ) from exc
    metadata = header.pop("__metadata__", None) or {}
    data = memoryview(blob)[8 + n :]
    tensors = {}
    for name, info in header.items():
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
            start, end = info["data_offsets"]
            shape = tuple(int(s) for s in info["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{os.fspath(path)}: unsupported or malformed tensor entry {name!r}"
            ) from exc
        if not 0 <= start <= end <= len(data) or (end - start) != dtype.itemsize * int(
            np.prod(shape)
        ):
            raise ValueError(f"{os.fspath(path)}: tensor {name!r} has an invalid byte range")
        tensors[name] = (
            np.frombuffer(data[start:end], dtype=dtype)
            .reshape(shape)
            .astype(dtype.newbyteorder("="))
        )
    return tensors, metadata

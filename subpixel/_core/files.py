"""Every file the package reads or writes goes through here: weight files read
strictly and lazily, and every write atomic.

* :func:`open_tensors` opens ``.safetensors`` (the ``safetensors`` library, memory-
  mapped, plus a duplicate-key check), ``.npz`` (headers checked before any data is
  read, never pickle), PyTorch ``.pt``/``.pth``/``.bin``/``.ckpt`` (only with
  ``allow_pickle``, then ``torch.load(weights_only=True)``) and Keras
  ``.weights.h5``/``.h5``/``.keras`` (``h5py``; only the datasets asked for are read).
  Arrays come back in native byte order; bfloat16 widens to float32 (exactly).
* :func:`write_tensors` writes ``.safetensors`` or ``.npz``; :func:`atomic_write`
  writes any file to a temporary name in the target folder and renames it on
  success, so a full disk, a kill or an error never leaves a partial file;
  :func:`staged` does the same for a file written with companions (an ONNX graph and
  its weights' data file), all under their final names in a private temporary folder.
  A temporary file is named ``.NAME.PID.XXXXXXXX.tmpSUFFIX``; what a killed process
  (``kill -9``) left so is removed by the next write of the same ``NAME``
  (:func:`sweep_stale`).
* Every problem with a file is a :class:`FileError`: ``"<path>: <reason>"``.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import re
import shutil
import stat
import struct
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "FileError",
    "TensorFile",
    "atomic_write",
    "open_tensors",
    "staged",
    "sweep_stale",
    "temporary_prefix",
    "write_state_dict",
    "write_tensors",
]

SAFETENSORS = (".safetensors",)
NPZ = (".npz",)
PICKLE = (".pt", ".pth", ".bin", ".ckpt")
KERAS = (".weights.h5", ".h5", ".keras")
MAX_HEADER = 100 << 20  # safetensors' own limit
MAX_TENSOR_BYTES = 2 << 30  # a declared tensor larger than this is refused before reading
MAX_NAMES_SHOWN = 20  # names listed in an error message


class FileError(ValueError):
    """A file that cannot be read or written as asked: ``"<path>: <reason>"``."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path, self.reason = os.fspath(path), reason
        super().__init__(f"{self.path}: {reason}")


def kind_by_suffix(path: str | os.PathLike, kinds: dict[str, tuple[str, ...]], unknown: str) -> str:
    """The first of ``kinds`` (kind -> its suffixes) whose suffix ends the name of
    ``path``, in any case; ``FileError(path, unknown)`` where none does."""
    name = os.fspath(path).lower()
    for kind, suffixes in kinds.items():
        if name.endswith(suffixes):
            return kind
    raise FileError(path, unknown)


def kind_of(path: str | os.PathLike) -> str:
    """``"safetensors"``, ``"npz"``, ``"pickle"`` or ``"keras"`` by the name's suffix."""
    return kind_by_suffix(
        path,
        {"safetensors": SAFETENSORS, "npz": NPZ, "pickle": PICKLE, "keras": KERAS},
        "unknown weights format (use .safetensors, .npz, .pt/.pth/.bin/.ckpt, .weights.h5, .h5 "
        "or .keras)",
    )


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------


_STARTED = time.time()  # this module's import: no earlier than the process's start


def temporary_prefix(name: str) -> str:
    """The start of the name of a temporary file or store written for ``name`` in its
    folder (``tempfile`` adds 8 random characters and the suffix)."""
    return f".{name}.{os.getpid()}."


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists (another user's) or cannot be asked: leave its files
        return True
    return True


def sweep_stale(path: str | os.PathLike, suffix: str) -> list[str]:
    """Remove what interrupted writes of ``path`` left in its folder, and return their
    names: only entries named as this module names temporaries for ``path``
    (``.NAME.PID.XXXXXXXX.tmpSUFFIX``, and ``.old`` after it: a replaced store being
    removed), whose process ``PID`` is gone, and last modified before this process
    started.  Nothing else is touched; errors are ignored (the write goes on)."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    pattern = re.compile(
        re.escape(f".{name}.") + r"(\d+)\.[a-z0-9_]{8}" + re.escape(f".tmp{suffix}") + r"(\.old)?"
    )
    removed: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or _alive(int(match.group(1))):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= _STARTED:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            continue
        removed.append(entry.name)
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)``, then rename the temporary file to ``path``.

    The temporary file is in ``path``'s folder and keeps its suffixes (writers that
    insist on an extension accept it); it is removed if ``write`` fails or is
    interrupted, and by the next write of ``path`` if the process was killed
    (:func:`sweep_stale`).  OS errors become :class:`FileError` naming ``path``."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    suffix = "".join(Path(name).suffixes)
    sweep_stale(path, suffix)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=temporary_prefix(name), suffix=f".tmp{suffix}", dir=folder
        )
    except OSError as exc:
        raise FileError(path, exc.strerror or str(exc)) from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except OSError as exc:
        raise FileError(path, exc.strerror or str(exc)) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def staged(path: str | os.PathLike) -> Iterator[str]:
    """Write ``path`` (and companion files whose names start with its name, such as
    ``model.onnx.data``) where nothing sees them until they are complete.

    Yields ``path``'s name inside a private temporary folder beside ``path``: write
    (and check) the file there.  When the block ends normally, every file of the folder
    is renamed into ``path``'s folder, the companions first and ``path`` last; when it
    raises or is interrupted, the folder and all in it are removed.  A file that a
    writer names after its own path (an exporter's weights sidecar) so gets its final
    name.  OS errors become :class:`FileError` naming ``path``."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    try:
        work = tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise FileError(path, exc.strerror or str(exc)) from None
    try:
        yield os.path.join(work, name)
        files = sorted(os.listdir(work), key=lambda f: f == name)  # `name` last
        if name not in files:
            raise FileError(path, "was not written")
        strays = [f for f in files if not f.startswith(name)]
        if strays:
            raise FileError(path, f"the writer left other files: {', '.join(strays)}")
        for f in files:
            target = os.path.join(folder, f)
            os.chmod(os.path.join(work, f), _mode_for(target))
            os.replace(os.path.join(work, f), target)
    except OSError as exc:
        raise FileError(path, exc.strerror or str(exc)) from None
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def write_state_dict(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """A PyTorch state dict written to ``path`` with ``torch.save``, atomically (a short
    write, which PyTorch reports as ``RuntimeError``, is a :class:`FileError`)."""
    import torch

    def save(tmp: str) -> None:
        try:
            torch.save(state, tmp)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise FileError(path, f"could not be written ({first})") from None

    atomic_write(path, save)


def _mode_for(path: str) -> int:
    """The permissions a new file gets (the umask's), or the replaced file's own."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _plain_arrays(tensors: dict[str, Any], path: str) -> dict[str, Any]:
    import numpy as np

    out = {}
    for key, value in tensors.items():
        a = np.asarray(value)
        if a.dtype.kind not in "biuf" or a.dtype.itemsize > 8:
            raise FileError(path, f"cannot store tensor {key!r} of dtype {a.dtype}")
        out[key] = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return out


def write_tensors(
    path: str | os.PathLike, tensors: dict[str, Any], metadata: dict[str, str] | None = None
) -> None:
    """Write NumPy arrays (little-endian on disk) and string metadata to a
    ``.safetensors`` or ``.npz`` file, atomically."""
    path = os.fspath(path)
    kind = kind_of(path)
    arrays = _plain_arrays(tensors, path)
    metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
    if kind == "safetensors":
        from safetensors.numpy import save

        try:  # serialised in memory (weights are small): no temporary file of the library's
            blob = save(arrays, metadata=metadata or None)
        except Exception as exc:  # the library's own error type
            raise FileError(path, _reason(exc)) from None

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(blob)

        atomic_write(path, write)
    elif kind == "npz":
        import numpy as np

        extra = {"__metadata__": np.array(json.dumps(metadata))} if metadata else {}

        savez: Any = np.savez  # (its stubs type **arrays as its keyword options)

        def save(tmp: str) -> None:
            with open(tmp, "wb") as f:
                savez(f, **arrays, **extra)

        atomic_write(path, save)
    else:
        raise FileError(path, "tensors are written as .safetensors or .npz")


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------


class TensorFile(abc.ABC):
    """A weights file opened for reading: names and shapes without reading data;
    ``file[name]`` reads one array (NumPy, native byte order)."""

    def __init__(self, path: str, metadata: dict[str, str]) -> None:
        self.path = path
        self.metadata = metadata

    @abc.abstractmethod
    def keys(self) -> list[str]:
        """The arrays' names."""

    def shape(self, key: str) -> tuple[int, ...]:
        """One array's shape, read from the header only."""
        if key not in self:
            raise self._missing(key)
        return self._shape(key)

    def __getitem__(self, key: str) -> Any:
        """One array, read now."""
        if key not in self:
            raise self._missing(key)
        return self._read(key)

    @abc.abstractmethod
    def _shape(self, key: str) -> tuple[int, ...]:
        """:meth:`shape` of one of :meth:`keys`."""

    @abc.abstractmethod
    def _read(self, key: str) -> Any:
        """``file[key]`` of one of :meth:`keys`."""

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def layer_names(self) -> list[str]:
        """Names of the layers the file describes (Keras files), else empty."""
        return []

    def layer_group(self, name: str) -> str | None:
        """The group holding layer ``name``'s variables (Keras files), else None."""
        return None

    def close(self) -> None:  # noqa: B027 - readers with open handles override it
        """Release the file (readers that hold it open override this)."""

    def __enter__(self) -> TensorFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _missing(self, key: str) -> FileError:
        return FileError(self.path, f"no array named {key!r}; the file has: {names(self.keys())}")


def _native(a: Any) -> Any:
    """A writable array in native byte order; bfloat16 (raw 16-bit) widened to float32."""
    import numpy as np

    if a.dtype.byteorder not in "=|":
        a = a.astype(a.dtype.newbyteorder("="))
    return np.array(a, copy=True) if not a.flags.writeable else a


def _bf16_to_float32(raw: Any) -> Any:
    import numpy as np

    return (raw.astype(np.uint32) << 16).view(np.float32)


# -- safetensors --------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        dup = sorted({k for k, _ in pairs if k in seen or seen.add(k)})  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key(s) in the header: {names(dup)}")
    return result


def names(keys: list[str]) -> str:
    """A list of array names for a message, shortened past :data:`MAX_NAMES_SHOWN`."""
    shown = ", ".join(keys[:MAX_NAMES_SHOWN])
    more = len(keys) - MAX_NAMES_SHOWN
    return f"{shown}, ... ({more} more)" if more > 0 else shown


class _Safetensors(TensorFile):
    def __init__(self, path: str) -> None:
        from safetensors import safe_open

        try:
            with open(path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise ValueError("too short for a safetensors header")
                (n,) = struct.unpack("<Q", head)
                if n > MAX_HEADER:
                    raise ValueError(f"header length {n} exceeds {MAX_HEADER}")
                header = json.loads(f.read(n).decode("utf-8"), object_pairs_hook=_no_duplicates)
            self._handle = safe_open(path, framework="numpy")  # validates the whole layout
        except OSError as exc:
            raise FileError(path, exc.strerror or str(exc)) from None
        except Exception as exc:  # json/struct/SafetensorError: the bytes are not one
            raise FileError(path, f"not a valid safetensors file ({_reason(exc)})") from None
        self._header = header
        self._start = 8 + n
        super().__init__(path, self._handle.metadata() or {})

    def keys(self) -> list[str]:
        return list(self._handle.keys())

    def _shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._header[key]["shape"])

    def _read(self, key: str) -> Any:
        import numpy as np

        info = self._header[key]
        if info["dtype"] == "BF16":  # NumPy has no bfloat16: read the bits, widen exactly
            start, end = info["data_offsets"]
            with open(self.path, "rb") as f:
                f.seek(self._start + start)
                raw = np.frombuffer(f.read(end - start), "<u2")
            return _bf16_to_float32(raw).reshape(info["shape"])
        try:
            return _native(self._handle.get_tensor(key))
        except (TypeError, ValueError, AttributeError) as exc:  # e.g. F8 dtypes NumPy lacks
            raise FileError(self.path, f"cannot read tensor {key!r} ({_reason(exc)})") from None

    def close(self) -> None:
        self._handle.__exit__(None, None, None)


# -- npz -------------------------------------------------------------------------


class _Npz(TensorFile):
    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
            self._members = {
                name[: -len(".npy")]: info
                for info in self._zip.infolist()
                if (name := info.filename).endswith(".npy")
            }
            if len(self._members) != len(self._zip.infolist()):
                raise ValueError("it holds members that are not .npy arrays")
            self._headers = {k: self._header(k) for k in self._members}
        except FileError:
            raise
        except (zipfile.BadZipFile, zlib.error, ValueError, EOFError, KeyError) as exc:
            raise FileError(path, f"not a valid .npz file ({_reason(exc)})") from None
        except OSError as exc:
            raise FileError(path, exc.strerror or str(exc)) from None
        self.path = path
        metadata: dict[str, str] = {}
        self._hidden: set[str] = set()
        if "__metadata__" in self._members:
            metadata = self._metadata()
            self._hidden.add("__metadata__")
        elif "config" in self._members and self._headers["config"][1].kind == "U":
            metadata = {"subpixel": str(self._read("config"))}  # files of subpixel 0.1
            self._hidden.add("config")
        super().__init__(path, metadata)

    def _header(self, key: str) -> tuple:
        import numpy as np

        fmt = np.lib.format
        with self._zip.open(self._members[key]) as fp:
            version = fmt.read_magic(fp)
            reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = reader(fp, max_header_size=10000)
            offset = fp.tell()
        if dtype.hasobject:
            raise FileError(self.path, f"refused: array {key!r} holds pickled Python objects")
        n = 1
        for s in shape:
            n *= s
        nbytes = n * dtype.itemsize
        size = self._members[key].file_size
        if nbytes > MAX_TENSOR_BYTES or offset + nbytes != size:
            raise FileError(
                self.path,
                f"array {key!r} declares shape {shape} of {dtype} ({nbytes} bytes) but its member "
                f"holds {size - offset} bytes",
            )
        return shape, dtype, fortran, offset, nbytes

    def _read(self, key: str) -> Any:
        import numpy as np

        shape, dtype, fortran, offset, nbytes = self._headers[key]
        try:
            with self._zip.open(self._members[key]) as fp:
                fp.read(offset)
                data = fp.read(nbytes)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise FileError(self.path, f"array {key!r} is damaged ({_reason(exc)})") from None
        if len(data) != nbytes:
            raise FileError(self.path, f"array {key!r} is truncated")
        a = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
        return _native(a)

    def _metadata(self) -> dict[str, str]:
        raw = self._read("__metadata__")
        try:
            meta = json.loads(str(raw))
        except (ValueError, RecursionError):
            meta = None
        if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
        ):
            raise FileError(self.path, "__metadata__ must be a JSON object of strings")
        return meta

    def keys(self) -> list[str]:
        return [k for k in self._members if k not in self._hidden]

    def _shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._headers[key][0])

    def close(self) -> None:
        self._zip.close()


# -- PyTorch pickles ----------------------------------------------------------------


class _Pickle(TensorFile):
    def __init__(self, path: str) -> None:
        try:
            with open(path, "rb") as f:
                head = f.read(4)
        except OSError as exc:
            raise FileError(path, exc.strerror or str(exc)) from None
        if not head.startswith((b"PK\x03\x04", b"\x80")):  # (told before torch is needed)
            raise FileError(
                path,
                "not a PyTorch checkpoint torch.load can read safely (neither a zip "
                "archive nor a pickle)",
            )
        try:
            import torch
        except ImportError:
            raise FileError(
                path, "reading PyTorch checkpoints needs torch (pip install torch)"
            ) from None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except OSError as exc:
            raise FileError(path, exc.strerror or str(exc)) from None
        except Exception as exc:  # untrusted bytes: any failure means "not a checkpoint"
            raise FileError(
                path, f"not a PyTorch checkpoint torch.load can read safely ({_reason(exc)})"
            ) from None
        self._tensors: dict[str, Any] = {}
        self._flatten(state, "", torch)
        if not self._tensors:
            raise FileError(path, f"holds no tensors (found {type(state).__name__})")
        super().__init__(path, {})

    def _flatten(self, obj: Any, prefix: str, torch: Any) -> None:
        if isinstance(obj, torch.Tensor):
            self._tensors[prefix.rstrip(".")] = obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                self._flatten(v, f"{prefix}{k}.", torch)

    def keys(self) -> list[str]:
        return list(self._tensors)

    def _shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._tensors[key].shape)

    def _read(self, key: str) -> Any:
        import torch

        t = self._tensors[key].detach()
        if t.dtype == torch.bfloat16:
            t = t.float()  # exact
        try:
            return _native(t.contiguous().numpy())
        except (TypeError, RuntimeError) as exc:
            raise FileError(self.path, f"cannot read tensor {key!r} ({_reason(exc)})") from None


# -- Keras h5 ---------------------------------------------------------------------------


class _Keras(TensorFile):
    def __init__(self, path: str) -> None:
        self._zip = None
        try:
            # the container is checked first: a broken file is named as such even where
            # h5py is missing
            if path.lower().endswith(".keras"):
                self._zip = zipfile.ZipFile(path)
                source: Any = self._zip.open("model.weights.h5")  # seekable: read on demand
            else:
                source = path
            try:
                import h5py
            except ImportError:
                raise FileError(path, "reading Keras files needs h5py (pip install h5py)") from None
            self._file = h5py.File(source, "r")
            names: list[str] = []
            self._file.visititems(
                lambda k, v: names.append(k) if isinstance(v, h5py.Dataset) else None
            )
        except KeyError:
            raise FileError(path, "not a Keras model file (no model.weights.h5 inside)") from None
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise FileError(path, f"not a valid .keras file ({_reason(exc)})") from None
        except OSError as exc:  # h5py reports a non-HDF5 file as OSError
            raise FileError(path, f"not a readable HDF5 file ({_reason(exc)})") from None
        self._names = names
        self._layers = self._layer_map(path)
        super().__init__(path, {})

    def _layer_map(self, path: str) -> dict[str, str]:
        """Layer name -> weights group.  Keras names a layer's group after its class
        (``conv2d``, ``conv2d_1``, ... in layer order), not its name; a ``.keras`` file's
        config.json lists the layers, so the names map to groups.  A bare weights file
        knows only its groups."""
        groups = {
            n.split("/")[1] for n in self._names if n.startswith("layers/") and n.count("/") >= 2
        }
        mapping = {g: f"layers/{g}" for g in groups}
        if self._zip is None:
            return mapping
        try:
            config = json.loads(self._zip.read("config.json"))
            layers = config["config"]["layers"]
            sequential = config.get("class_name") == "Sequential"
        except (
            KeyError,
            TypeError,
            ValueError,
            RecursionError,
            AttributeError,
            zipfile.BadZipFile,
        ):
            return mapping
        used: dict[str, int] = {}
        for entry in layers if isinstance(layers, list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
                continue
            kind = str(entry.get("class_name", ""))
            if sequential and kind == "InputLayer":
                continue  # a Sequential model's weights skip its input layer
            group = _snake_case(kind)
            if group in used:
                used[group] += 1
                group = f"{group}_{used[group]}"
            else:
                used[group] = 0
            name = entry["config"].get("name")
            if isinstance(name, str) and group in groups:
                mapping[name] = f"layers/{group}"
        return mapping

    def layer_names(self) -> list[str]:
        return sorted(self._layers)

    def layer_group(self, name: str) -> str | None:
        return self._layers.get(name)

    def keys(self) -> list[str]:
        return list(self._names)

    def _shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._file[key].shape)

    def _read(self, key: str) -> Any:
        import numpy as np

        ds = self._file[key]
        if ds.dtype.kind not in "biuf":
            raise FileError(self.path, f"dataset {key!r} has dtype {ds.dtype}, not numbers")
        if ds.external or ds.is_virtual:  # storage outside this file: never followed
            raise FileError(self.path, f"dataset {key!r} refers to data outside the file: refused")
        nbytes = ds.size * ds.dtype.itemsize
        if nbytes > MAX_TENSOR_BYTES:
            raise FileError(self.path, f"dataset {key!r} declares {ds.shape}: too large")
        if nbytes and ds.id.get_storage_size() == 0:
            raise FileError(self.path, f"dataset {key!r} declares {ds.shape} but holds no data")
        try:
            return _native(np.asarray(ds[()]))
        except (OSError, ValueError) as exc:
            raise FileError(self.path, f"cannot read dataset {key!r} ({_reason(exc)})") from None

    def close(self) -> None:
        self._file.close()
        if self._zip is not None:
            self._zip.close()


def _snake_case(name: str) -> str:
    """Keras's rule for the weights-file name of a layer class (``Conv2D`` -> ``conv2d``,
    ``SubPixelConv`` -> ``sub_pixel_conv``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_tensors(path: str | os.PathLike, *, allow_pickle: bool = False) -> TensorFile:
    """Open a weights file by its suffix; :class:`FileError` for anything wrong with it.

    PyTorch checkpoints are pickle files: refused unless ``allow_pickle``, and even
    then read with ``torch.load(weights_only=True)``, which runs no code from the file."""
    path = os.fspath(path)
    kind = kind_of(path)
    if not os.path.isfile(path):
        raise FileError(path, "no such file")
    if kind == "pickle" and not allow_pickle:
        raise FileError(
            path,
            "PyTorch checkpoints are pickle files, which can run code; pass --allow-pickle "
            "(allow_pickle=True) to read it with torch.load(weights_only=True)",
        )
    readers: dict[str, Callable[[str], TensorFile]] = {
        "safetensors": _Safetensors,
        "npz": _Npz,
        "pickle": _Pickle,
        "keras": _Keras,
    }
    return readers[kind](path)


def read_all(path: str | os.PathLike, **kwargs: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Every array and the metadata of a (small) weights file."""
    with open_tensors(path, **kwargs) as f:
        return {k: f[k] for k in f.keys()}, dict(f.metadata)

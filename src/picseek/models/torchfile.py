"""Tensors from a PyTorch checkpoint (`torch.save` of a state dict) as numpy arrays, without importing torch.

Both formats `torch.save` writes are read: the zip archive (torch >= 1.6: `<name>/data.pkl`, one `<name>/data/<key>`
record per storage) and the legacy stream (pickles of a magic number, the protocol, system facts, the objects and
the storage keys, then each storage as an int64 element count and its raw bytes; the built-in model's weights file
is one of these).

A checkpoint is a pickle, and unpickling runs whatever callables it names; here the unpickler resolves only what a
state dict needs (collections.OrderedDict, torch's tensor-rebuild functions, the storage types), each replaced by a
harmless stand-in, and refuses every other name (os.system, builtins.eval, ...) with `UnsafeCheckpointError` before
anything is called. Tensor views are bounds-checked against their storage, then copied out as C-contiguous arrays.
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = ["CheckpointError", "UnsafeCheckpointError", "load", "load_state_dict"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
LEGACY_PROTOCOL = 1001  # torch.serialization.PROTOCOL_VERSION


class CheckpointError(ValueError):
    """The file is not a checkpoint of tensors this reader understands (or is damaged)."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint's pickle asks for something other than tensors and containers."""


class _StorageType:
    """Stands in for torch.FloatStorage & co.: only its numpy dtype matters."""

    def __init__(self, name: str, dtype: str):
        self.name, self.dtype = name, np.dtype(dtype)

    def __repr__(self) -> str:
        return f"torch.{self.name}"


# bfloat16 has no numpy dtype: read as its 16 bits, widened to float32 (exactly) when the tensor is rebuilt
_BF16 = "bfloat16"
_STORAGE_TYPES = {name: _StorageType(name, dtype) for name, dtype in (
    ("FloatStorage", "float32"), ("DoubleStorage", "float64"), ("HalfStorage", "float16"),
    ("BFloat16Storage", "uint16"), ("LongStorage", "int64"), ("IntStorage", "int32"), ("ShortStorage", "int16"),
    ("CharStorage", "int8"), ("ByteStorage", "uint8"), ("BoolStorage", "bool"))}


class _Storage:
    """One storage (or a legacy view into one): element type, length, and the bytes once they are read."""

    def __init__(self, kind: _StorageType, numel: int, root: _Storage | None = None, offset: int = 0):
        self.kind, self.numel, self.root, self.offset = kind, numel, root, offset
        self.data: np.ndarray | None = None

    def array(self) -> np.ndarray:
        if self.root is not None:
            return self.root.array()[self.offset:self.offset + self.numel]
        if self.data is None:
            raise CheckpointError(f"a {self.kind!r} the checkpoint refers to has no data")
        return self.data


class _TensorRef:
    """A tensor as the pickle describes it; turned into an array once every storage is read."""

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def array(self) -> np.ndarray:
        flat = self.storage.array()
        if self.storage.kind.name == "BFloat16Storage":
            flat = (flat.astype(np.uint32) << 16).view(np.float32)
        n = len(flat)
        if self.offset > n or (all(self.size) and self.offset + sum((a - 1) * s for a, s in
                                                                     zip(self.size, self.stride)) >= n):
            raise CheckpointError(f"a tensor of size {self.size}, stride {self.stride} at offset {self.offset} "
                                  f"reaches past its storage of {n} elements")
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.size,
                                               strides=[s * flat.itemsize for s in self.stride], writeable=False)
        return np.array(view, order="C", copy=True)


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) and v >= 0 for v in value):
        raise CheckpointError(f"a tensor's {what} is not a tuple of non-negative integers: {value!r}")
    return tuple(int(v) for v in value)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> _TensorRef:
    """torch._utils._rebuild_tensor(_v2): requires_grad, backward hooks and metadata do not matter to an array."""
    if not isinstance(storage, _Storage):
        raise UnsafeCheckpointError(f"a tensor is rebuilt from {type(storage).__name__}, not a storage")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise CheckpointError(f"a tensor has the storage offset {storage_offset!r}")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise CheckpointError(f"a tensor's size {size} and stride {stride} differ in length")
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    """torch._utils._rebuild_parameter: an nn.Parameter is its tensor."""
    if not isinstance(data, _TensorRef):
        raise UnsafeCheckpointError(f"a parameter wraps {type(data).__name__}, not a tensor")
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): kind for name, kind in _STORAGE_TYPES.items()},
}


class _Unpickler(pickle.Unpickler):
    """Resolves only `_ALLOWED`; storages through `persistent_load`, from the `storages` table it fills."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage] | None = None):
        super().__init__(file, encoding="utf-8")
        self.storages = storages if storages is not None else {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(f"the checkpoint's pickle asks for {module}.{name}, which a file of "
                                        "tensors never needs: refused (the file is damaged or not what it "
                                        "claims to be)") from None

    def persistent_load(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or not pid:
            raise UnsafeCheckpointError(f"unexpected persistent id {pid!r}")
        typename = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if typename != "storage" or len(pid) not in (5, 6):
            raise UnsafeCheckpointError(f"unexpected persistent id {pid[:1]!r} (only storages are read)")
        # zip: (storage, type, key, location, numel); legacy: (..., numel, view_metadata)
        kind, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(kind, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise UnsafeCheckpointError(f"unexpected storage description {pid!r}")
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(kind, numel)
        elif storage.kind is not kind or storage.numel != numel:
            raise CheckpointError(f"storage {key} is described twice, differently")
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return storage
        view_key, offset, view_numel = view
        if not (isinstance(offset, int) and isinstance(view_numel, int) and 0 <= offset
                and offset + view_numel <= numel):
            raise CheckpointError(f"storage view {view!r} reaches outside storage {key}")
        return self.storages.setdefault(str(view_key), _Storage(kind, view_numel, storage, offset))


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _TensorRef):
        return obj.array()
    if isinstance(obj, dict):
        out = type(obj)() if type(obj) in (dict, OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialise(v)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    if isinstance(obj, (_Storage, _StorageType)):
        raise CheckpointError("the checkpoint holds a bare storage, not only tensors")
    return obj


def _read_zip(zf: zipfile.ZipFile) -> Any:
    pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
        raise CheckpointError("not a torch.save zip archive (no single <name>/data.pkl)")
    prefix = pkls[0][:-len("data.pkl")]
    order = "<"
    if prefix + "byteorder" in zf.namelist():
        order = {"little": "<", "big": ">"}.get(zf.read(prefix + "byteorder").decode("ascii", "replace").strip())
        if order is None:
            raise CheckpointError("the archive's byteorder record is neither little nor big")
    unpickler = _Unpickler(io.BytesIO(zf.read(pkls[0])))
    obj = unpickler.load()
    for key, storage in unpickler.storages.items():
        if storage.root is not None:
            continue
        name = f"{prefix}data/{key}"
        try:
            info = zf.getinfo(name)
        except KeyError:
            raise CheckpointError(f"the archive lacks {name}") from None
        dtype = storage.kind.dtype.newbyteorder(order)
        if info.file_size != storage.numel * dtype.itemsize:
            raise CheckpointError(f"{name} holds {info.file_size} bytes, not {storage.numel} x {dtype.itemsize}")
        storage.data = np.frombuffer(zf.read(name), dtype=dtype).astype(storage.kind.dtype, copy=False)
    return obj


def _read_legacy(f: BinaryIO, size: int) -> Any:
    header = _Unpickler(f)
    if header.load() != LEGACY_MAGIC:
        raise CheckpointError("not a torch.save file (no zip archive, no legacy magic number)")
    if header.load() != LEGACY_PROTOCOL:
        raise CheckpointError("a legacy torch.save file of an unknown protocol version")
    info = header.load()
    if not isinstance(info, dict) or not info.get("little_endian", False):
        raise CheckpointError("a big-endian legacy torch.save file")
    unpickler = _Unpickler(f)
    obj = unpickler.load()
    keys = _Unpickler(f).load()
    if not isinstance(keys, list):
        raise CheckpointError("the legacy file's storage key list is missing")
    for key in keys:
        storage = unpickler.storages.get(str(key))
        if storage is None or storage.root is not None:
            raise CheckpointError(f"the legacy file stores data for an unknown storage {key!r}")
        head = f.read(8)
        if len(head) != 8:
            raise CheckpointError("the legacy file ends before its storages")
        (numel,) = struct.unpack("<q", head)
        nbytes = numel * storage.kind.dtype.itemsize
        if numel != storage.numel or nbytes > size - f.tell():
            raise CheckpointError(f"storage {key} holds {numel} elements, not the {storage.numel} described")
        storage.data = np.frombuffer(f.read(nbytes), dtype=storage.kind.dtype.newbyteorder("<"))
    return obj


def load(path: str | os.PathLike) -> Any:
    """The checkpoint's object with every tensor as a numpy array (containers kept: dicts, lists, tuples)."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                obj = _read_zip(zf)
        else:
            with open(path, "rb") as f:
                obj = _read_legacy(f, os.fstat(f.fileno()).st_size)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            zipfile.BadZipFile, struct.error, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read the checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    return _materialise(obj)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A state dict (name -> array) from a checkpoint that is one."""
    obj = load(path)
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and isinstance(v, np.ndarray)
                                               for k, v in obj.items()):
        raise CheckpointError(f"{path} is not a state dict (a mapping of names to tensors)")
    return dict(obj)

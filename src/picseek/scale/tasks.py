"""The worker side of Spark indexing: what runs inside a Python worker for each partition.

`embed_frames` is the function `mapInPandas` calls: input rows (path, size, mtime_ns) in, shard rows out. It uses
the single-machine pipeline's stages unchanged: `decode_stream` (decode_file inline, one file at a time: Spark's
tasks are the parallelism) and `embed_batches` (one model call per batch). The model is built once per Python
worker and kept in a module-level cache keyed by its name, so the tasks a reused worker runs share it. A broken
input becomes an error row; only a whole-task problem (a model that cannot be loaded) fails the task.

Nothing heavy is pickled: a task receives a `TaskSpec` (a model name, numbers, or a small factory function).
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..ingest.images import DEFAULT_MAX_PIXELS
from ..ingest.paths import FileEntry, is_remote, store_path
from ..ingest.pipeline import DEFAULT_BATCH_SIZE, decode_stream, embed_batches
from ..paths import from_text
from .shards import shard_rows

log = logging.getLogger(__name__)
UNKNOWN = -1  # size / mtime_ns of an input row not yet stat'ed (Arrow turns nulls into floats: 2^53 < ns times)

_MODELS: dict[str, object] = {}
_MODELS_LOCK = threading.Lock()


@dataclass(frozen=True)
class TaskSpec:
    """What every task needs: the model (a name `registry.load_embedder` builds, or `factory`, a picklable
    function that returns an Embedder, for models outside the registry), and batching settings."""

    model: str
    batch_size: int = DEFAULT_BATCH_SIZE
    max_pixels: int = DEFAULT_MAX_PIXELS
    threads: int | None = None  # model threads per task (default: the CPUs Spark gives a task, spark.task.cpus)
    factory: Callable[[], object] | None = None
    precision: str | None = None  # what runs a CLIP-family model (models/onnx.py); None: the backend's default
    device: str = "cpu"  # "cuda": the GPU Spark gave the task (spark.task.resource.gpu.amount), else cuda:0


def worker_model(spec: TaskSpec):
    """The model for `spec`, built the first time this Python worker needs it (cached by name and precision)."""
    device = task_device(spec.device)
    key = f"{spec.model}|{spec.precision}|{device}"
    with _MODELS_LOCK:
        emb = _MODELS.get(key)
        if emb is None:
            if spec.factory is not None:
                emb = spec.factory()
            else:
                from ..models import registry

                emb = registry.load_embedder(spec.model, device=device, precision=spec.precision)
            log.info("worker %d built model %s (%s)", os.getpid(), spec.model, emb.model_id)
            _MODELS[key] = emb
        return emb


def task_device(device: str) -> str:
    """"cuda" -> "cuda:N" for the first GPU Spark assigned to this task (GPU scheduling), else as given."""
    if device != "cuda":
        return device
    try:
        from pyspark import TaskContext
    except ImportError:  # pragma: no cover - outside Spark
        return device
    ctx = TaskContext.get()
    gpu = ctx.resources().get("gpu") if ctx is not None else None
    return f"cuda:{gpu.addresses[0]}" if gpu is not None and gpu.addresses else device


def _task_cpus() -> int:
    try:
        from pyspark import TaskContext
    except ImportError:  # pragma: no cover - outside Spark
        return 1
    ctx = TaskContext.get()
    return max(1, ctx.cpus()) if ctx is not None else 1


def _set_threads(spec: TaskSpec) -> None:
    set_task_threads(spec.threads)


def set_task_threads(threads: int | None = None) -> None:
    """One task, `spark.task.cpus` model threads (ONNX Runtime sessions, and torch where a model runs in it):
    executors run a task per core, so the default (every core of the machine per task) would oversubscribe them.
    Also what Spark mining's re-ranking tasks call (query/mine.py)."""
    import sys

    from ..models import onnx

    threads = threads or _task_cpus()
    onnx.set_default_threads(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def entry(path: str, size: int, mtime_ns: int) -> FileEntry:
    """A FileEntry for an input row; size and mtime are looked up where the row does not carry them (a missing
    file gets 0/0 here and its error row from decode_file)."""
    if size != UNKNOWN and mtime_ns != UNKNOWN:
        return FileEntry(path, int(size), int(mtime_ns))
    from ..ingest import remote

    try:
        path = store_path(path)  # file:// -> a local path; URLs in the form the store keeps (no network)
    except Exception:  # noqa: BLE001 - a malformed URL is reported by decode_file
        pass
    try:
        if is_remote(path):
            fs, inner = remote.filesystem(path)
            info = fs.info(inner)
            return FileEntry(path, int(info.get("size") or 0), remote.change_marker(info))
        st = os.stat(path)
        return FileEntry(path, st.st_size, st.st_mtime_ns)
    except Exception:  # noqa: BLE001 - an input that cannot be looked at is reported by decode_file
        return FileEntry(path, 0, 0)


def embed_frames(frames: Iterator, spec: TaskSpec) -> Iterator:
    """mapInPandas body: pandas frames of (path, size, mtime_ns) -> pandas frames in the shard schema."""
    import pandas as pd

    _set_threads(spec)  # before the model: its ONNX Runtime sessions take the thread count when they are made
    emb = worker_model(spec)
    for frame in frames:
        entries = [entry(from_text(p), s, m) for p, s, m in zip(frame["path"], frame["size"], frame["mtime_ns"])]
        stream = decode_stream(entries, emb.image_spec, workers=0, window=0, max_pixels=spec.max_pixels)
        for _, records, bad in embed_batches(emb, stream, spec.batch_size):
            yield pd.DataFrame(shard_rows(records, bad, emb.name, emb.model_id))

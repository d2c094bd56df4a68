"""The shard format: Parquet files with one row per input image, written by Spark tasks and read by `merge`.

Columns (SPARK_SCHEMA):
    path          the stored form of the input: an absolute local path, or a canonical URL (s3://, https://, ...)
    size          bytes (0 where unknown)
    mtime_ns      modification time in ns, or for objects in storage the change marker of ingest/remote.py
    content_hash  the file's content hash (ingest/contenthash.py: "b3:" + hex; "" where the file could not be read)
    info          JSON of the image facts (width, height, format, EXIF fields); null for an error row
    vectors       {space: little-endian float32 bytes}, one entry per space of the model; null for an error row
    error         null, or the one-line reason the input was skipped
    model         the name the model was built from (a registry name or a folder)
    model_id      the identity of the weights (what a library records and checks)

Vectors are kept as float32 (what the model gave); the built-in store keeps float16, like the single-machine
pipeline. Nothing here imports pyspark.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..paths import from_text, to_text
from ..store.base import ImageRecord

SPARK_SCHEMA = ("path string, size long, mtime_ns long, content_hash string, info string, "
                "vectors map<string,binary>, error string, model string, model_id string")
COLUMNS = ("path", "size", "mtime_ns", "content_hash", "info", "vectors", "error", "model", "model_id")
VECTOR_DTYPE = np.dtype("<f4")


def shard_rows(records: Sequence[ImageRecord], errors: Sequence[tuple[str, int, int, str]], model: str,
               model_id: str) -> dict[str, list]:
    """One embedded batch (the pipeline's records and error rows) -> shard columns (for a pandas DataFrame)."""
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    for r in records:
        _append(cols, to_text(r.path), r.size, r.mtime_ns, r.content_hash, json.dumps(r.info, default=str),
                {space: np.asarray(v, dtype=VECTOR_DTYPE).tobytes() for space, v in r.vectors.items()}, None)
    for path, size, mtime_ns, reason in errors:
        _append(cols, to_text(path), size, mtime_ns, "", None, None, reason)
    n = len(records) + len(errors)
    cols["model"], cols["model_id"] = [model] * n, [model_id] * n
    return cols


def write_shard(path: str | os.PathLike, cols: dict[str, list]) -> None:
    """Write shard columns (from `shard_rows`) as one Parquet file, outside Spark (tools, tests)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
                        ("content_hash", pa.string()), ("info", pa.string()),
                        ("vectors", pa.map_(pa.string(), pa.binary())), ("error", pa.string()),
                        ("model", pa.string()), ("model_id", pa.string())])
    pq.write_table(pa.table(cols, schema=schema), path)


def _append(cols: dict[str, list], *values) -> None:
    for name, value in zip(COLUMNS, values):
        cols[name].append(value)


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class ShardRow:
    """One row read back: an image to write (record) or an error row (error set, record None)."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str
    model: str
    model_id: str
    record: ImageRecord | None
    error: str | None


def shard_files(sources: Iterable[str | os.PathLike]) -> list[Path]:
    """The Parquet files of shard folders (Spark's output folders: part-*.parquet, hidden and _temporary files
    left out) and of files named directly, in a stable order. A source that holds none is an error."""
    files: list[Path] = []
    for src in sources:
        p = Path(src).expanduser()
        if p.is_file():
            files.append(p)
            continue
        if not p.is_dir():
            raise UsageError(f"shards not found: {src}")
        found = sorted(f for f in p.rglob("*.parquet") if f.is_file() and not _hidden(f.relative_to(p)))
        if not found:
            raise UsageError(f"no shards (*.parquet) in {src}: did the Spark job finish? (look for _SUCCESS)")
        files += found
    return files


def _hidden(rel: Path) -> bool:
    return any(part.startswith((".", "_")) for part in rel.parts)


def read_shard(path: Path, batch_rows: int = 512) -> Iterator[list[ShardRow]]:
    """The rows of one shard file, `batch_rows` at a time. A file that is not a shard is a UsageError."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError("reading shards needs pyarrow: pip install 'picseek[parquet]'") from None
    try:
        pf = pq.ParquetFile(path)
        missing = [c for c in COLUMNS if c not in pf.schema_arrow.names]
        if missing:
            raise UsageError(f"{path} is not a picseek shard (no column {', '.join(missing)})")
        for batch in pf.iter_batches(batch_size=batch_rows, columns=list(COLUMNS)):
            yield [_row(d) for d in batch.to_pylist()]
    except (pa.ArrowException, OSError) as exc:
        raise UsageError(f"{path}: not a readable shard: {' '.join(str(exc).split())[:200]}") from None


def _row(d: dict) -> ShardRow:
    size, mtime_ns, digest = int(d["size"] or 0), int(d["mtime_ns"] or 0), d["content_hash"] or ""
    path = from_text(d["path"])  # (shards keep paths.to_text: Parquet strings are UTF-8)
    record = None
    if d["error"] is None:
        vectors = {space: np.frombuffer(blob, dtype=VECTOR_DTYPE) for space, blob in (d["vectors"] or [])}
        record = ImageRecord(path, size, mtime_ns, digest, json.loads(d["info"] or "{}"), vectors)
    return ShardRow(path, size, mtime_ns, digest, d["model"], d["model_id"], record, d["error"])


def model_record(row: ShardRow) -> dict:
    """The model record a library keeps (as Library records it), from a shard row that has vectors."""
    spaces = {space: int(v.shape[0]) for space, v in row.record.vectors.items()}
    return {"name": row.model, "model_id": row.model_id, "dim": spaces.get("main", next(iter(spaces.values()))),
            "spaces": spaces}

"""Shards -> a library's store, idempotently.

A shard row whose path the store already holds with the same content hash, size and mtime adds nothing, so merging
the same shards twice (or shards of overlapping runs) leaves the library as it was. Error rows go to the errors
table the way an index run records them (`write_images(records, errors)`): a file the store holds unchanged keeps
its vectors, an error already recorded for the same file is not recorded again. Every batch is one transaction,
so an interrupted merge leaves whole batches and the next merge of the same shards finishes the job.

The shards' model must be the library's (the `model_id` every row carries); a new library takes the shards' model.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ModelMismatchError, UsageError
from ..models import registry
from ..store.base import FileState, recorded_run
from .shards import ShardRow, model_record, read_shard, shard_files

log = logging.getLogger(__name__)


@dataclass
class MergeReport:
    shards: list[str]  # the Parquet files read
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0  # same path and content already in the library
    errors: int = 0  # error rows recorded
    skipped_errors: int = 0  # error rows already recorded, or for a file the library holds unchanged
    seconds: float = 0.0
    error_samples: list[tuple[str, str]] = field(default_factory=list)

    @property
    def written(self) -> int:
        return self.added + self.updated

    def as_dict(self) -> dict:
        d = asdict(self)
        d["written"] = self.written
        return d


@dataclass
class MergeProgress:
    done: int  # shard files read so far
    total: int
    rows: int
    path: str = ""


def shard_models(files: Sequence[Path]) -> dict[str, str]:
    """model_id -> model name over every row of the shards (only the two small columns are read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    found: dict[str, str] = {}
    for f in files:
        try:
            table = pq.read_table(f, columns=["model", "model_id"])
        except (pa.ArrowException, OSError, KeyError) as exc:
            raise UsageError(f"{f} is not a picseek shard: {' '.join(str(exc).split())[:200]}") from None
        for name, model_id in zip(table.column("model").to_pylist(), table.column("model_id").to_pylist()):
            found.setdefault(model_id, name)
    return found


def check_model(store, files: Sequence[Path]) -> str | None:
    """The shards' one model_id (None for shards without rows); refuses mixed models and another library model."""
    models = shard_models(files)
    if len(models) > 1:
        listed = ", ".join(f"{n} ({m})" for m, n in sorted(models.items()))
        raise UsageError(f"the shards were made by several models ({listed}): merge each model's shards into its "
                         "own library")
    if not models:
        return None
    (model_id, name), = models.items()
    rec = store.get_model()
    if rec and registry.verifies(rec, name, None):  # imported vectors of the model named: the shards saw its weights
        store.set_model({**rec, "model_id": model_id})
        return model_id
    if rec and rec["model_id"] != model_id:
        raise ModelMismatchError(
            f"the shards were made by {name} ({model_id}) but the library holds vectors of {rec['name']} "
            f"({rec['model_id']}): merge into another --library, or index on Spark with --model {rec['name']}")
    return model_id


def merge_shards(store, sources: Iterable[str | os.PathLike], *, batch_rows: int = 512,
                 progress: Callable[[MergeProgress], None] | None = None) -> MergeReport:
    """Load shard folders/files into `store` (a Store). Returns what was written and what was already there."""
    t0 = time.perf_counter()
    sources = [str(Path(s).expanduser().resolve()) for s in sources]
    if not sources:
        raise UsageError("no shards given to merge")
    files = shard_files(sources)
    check_model(store, files)
    report = MergeReport(shards=[str(f) for f in files])
    notify = progress or (lambda p: None)

    def summary() -> dict:
        report.seconds = time.perf_counter() - t0
        return {**report.as_dict(), "embedded": report.written, "merge": True}

    with recorded_run(store, sources, summary):
        _Merger(store, report).run(files, batch_rows, notify)
    return report


class _Merger:
    def __init__(self, store, report: MergeReport):
        self.store, self.report = store, report
        self.states: dict[str, FileState] = store.file_states([])
        self.known: dict[str, tuple[int, int]] = store.known_errors([])
        self.has_model = store.get_model() is not None

    def run(self, files: Sequence[Path], batch_rows: int, notify: Callable[[MergeProgress], None]) -> None:
        notify(MergeProgress(0, len(files), 0))
        for i, f in enumerate(files):
            for rows in read_shard(f, batch_rows):
                self.batch(rows)
            notify(MergeProgress(i + 1, len(files), self.report.rows, str(f)))

    def batch(self, rows: list[ShardRow]) -> None:
        records, errors = [], []
        for row in rows:
            self.report.rows += 1
            if row.record is not None:
                if self.image(row):
                    records.append(row.record)
            elif self.error(row):
                errors.append((row.path, row.size, row.mtime_ns, row.error))
        if records and not self.has_model:
            self.store.set_model(model_record(next(r for r in rows if r.record is not None)))
            self.has_model = True
        if records or errors:
            self.store.write_images(records, errors)

    def image(self, row: ShardRow) -> bool:
        """True when the row is new to the store (or differs from what the store holds)."""
        st = self.states.get(row.path)
        if st is not None and (st.content_hash, st.size, st.mtime_ns) == (row.content_hash, row.size, row.mtime_ns):
            self.report.unchanged += 1
            return False
        if st is None:
            self.report.added += 1
        else:
            self.report.updated += 1
        self.states[row.path] = FileState(-1, row.path, row.size, row.mtime_ns, row.content_hash)
        self.known.pop(row.path, None)
        return True

    def error(self, row: ShardRow) -> bool:
        st = self.states.get(row.path)
        if (st is not None and (st.size, st.mtime_ns) == (row.size, row.mtime_ns)) or \
                self.known.get(row.path) == (row.size, row.mtime_ns):
            self.report.skipped_errors += 1
            return False
        self.report.errors += 1
        if len(self.report.error_samples) < 20:
            self.report.error_samples.append((row.path, row.error or ""))
        log.info("skipped %s: %s", row.path, row.error)
        self.states.pop(row.path, None)  # write_images drops an image that is now an error
        self.known[row.path] = (row.size, row.mtime_ns)
        return True


__all__ = ["MergeReport", "MergeProgress", "merge_shards", "check_model"]

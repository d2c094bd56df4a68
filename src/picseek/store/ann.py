"""Approximate nearest neighbours for large libraries: a FAISS inverted-file index over a space's vectors.

Above the `ann_threshold` setting (vectors in a space), a search without a filter, or with a broad one, asks an
IVF index (`IVF<nlist>,SQfp16`: k-means cells, float16 codes like the stored vectors, inner product = cosine on
unit vectors) for its candidates instead of multiplying every row; the candidates' scores are exact for their
stored vectors. The index is built on first use (or at the end of an index run), saved as
`<library>/cache/ann-<space>-<lineage>.faiss`, opened memory-mapped by later processes, and kept in step with the
vector table: its ids are the vector rows' `seq`s, so rows appended since are added and deleted rows removed
without a rebuild (the table's lineage, new whenever the table is built afresh from the database, says whether the
seqs still name the same vectors); it is trained again when the space grew or shrank about 6x (its cell count 2.5x
off). Without faiss installed, search stays exact (one log line). Figures (recall@10 against exact, latency,
build time): benchmarks/query_latency.py.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._fs import FileLock, atomic_path
from .vectorcache import CACHE_DIR, VectorTable

log = logging.getLogger(__name__)

MIN_TRAIN_PER_CELL = 39  # faiss k-means wants at least this many training points per cell
TRAIN_PER_CELL = 40
SCAN_ROWS = 49_152  # vectors a query looks at (in whole cells)
MIN_PROBES = 16
RETRAIN_RATIO = 2.5  # train again when the cells in use and the cells the space now wants differ this much
SAVE_FRACTION = 0.01  # save the index again once this share of its rows changed since the file was written
_indexes: dict[tuple[str, str], AnnIndex] = {}
_lock = threading.Lock()
_faiss = None


def faiss_module():
    """The faiss module, or None when it is not installed (logged once)."""
    global _faiss
    if _faiss is None:
        try:
            import faiss
        except ImportError:
            log.warning("faiss is not installed: this large library is searched exactly, which is slower "
                        "(pip install 'picseek[large]' for its approximate index)")
            _faiss = False
        else:
            _faiss = faiss
    return _faiss or None


def _ideal_cells(rows: int) -> float:
    """sqrt(rows) cells, fewer where that leaves too few rows per cell to train on."""
    return max(1.0, min(float(np.sqrt(max(rows, 1))), rows / MIN_TRAIN_PER_CELL))


def cells_for(rows: int) -> int:
    """IVF cells (nlist) for a number of vectors: the power of two nearest sqrt(rows), with enough rows per cell
    to train on. (2 sqrt(rows) cells took 4x longer to build at 1M rows for little recall: benchmarks/README.md.)"""
    nlist = 1 << int(round(np.log2(_ideal_cells(rows))))
    while nlist > 1 and nlist * MIN_TRAIN_PER_CELL > rows:
        nlist //= 2
    return nlist


def probes_for(nlist: int, rows: int) -> int:
    """Cells searched per query (nprobe): enough to look at about SCAN_ROWS vectors, at least 16. Recall@10 then
    stays at 0.97-1.0 from 100k to 1M rows (benchmarks/README.md); the cost grows with SCAN_ROWS, not the rows."""
    per_cell = max(rows / max(nlist, 1), 1.0)
    return int(min(nlist, max(MIN_PROBES, np.ceil(SCAN_ROWS / per_cell))))


@dataclass
class AnnIndex:
    """A FAISS IVF index whose ids are vector seqs, and what it holds."""

    index: object
    seqs: np.ndarray  # the seqs it holds, ascending
    nlist: int
    unsaved: int  # rows added or removed since the file on disk was written
    lock: threading.Lock = field(default_factory=threading.Lock)
    table: VectorTable | None = None  # the table it was last brought in step with
    mapped: bool = False  # memory-mapped from its file: must never be changed (faiss aborts the process)
    lineage: str = ""  # of the vector table it was built from

    def search(self, table: VectorTable, q: np.ndarray, k: int, mask: np.ndarray | None = None,
               nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(table rows, scores) of the best `k` rows the index finds, best first; `mask` (one bool per table row)
        keeps the search to the allowed rows, and probes 1/sqrt(share allowed) times more cells (recall@10 >= 0.985
        down to a 2 % filter at 1M rows, benchmarks/README.md)."""
        faiss = faiss_module()
        nprobe = nprobe or probes_for(self.nlist, len(self.seqs))
        if mask is not None:
            nprobe = int(np.ceil(nprobe / np.sqrt(max(np.count_nonzero(mask), 1) / max(len(mask), 1))))
        params = faiss.SearchParametersIVF(nprobe=min(self.nlist, nprobe))
        if mask is not None:
            lut = np.zeros(table.last_seq + 1, dtype=bool)
            lut[table.seqs[mask]] = True
            bitmap = np.packbits(lut, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        with self.lock:
            scores, found = self.index.search(np.ascontiguousarray(q, dtype=np.float32)[None], int(k),
                                              params=params)
        found, scores = found[0], scores[0]
        rows = np.minimum(np.searchsorted(table.seqs, found), max(table.rows - 1, 0))
        keep = (found >= 0) & (table.seqs[rows] == found) if table.rows else found < -1
        return rows[keep], scores[keep]


def _ids_of(index) -> np.ndarray:
    """Every id an IVF index holds, ascending (read from its inverted lists)."""
    faiss = faiss_module()
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    parts = [faiss.rev_swig_ptr(lists.get_ids(c), lists.list_size(c)).copy()
             for c in range(ivf.nlist) if lists.list_size(c)]
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def _build(table: VectorTable) -> AnnIndex:
    faiss = faiss_module()
    t0 = time.perf_counter()
    nlist = cells_for(table.rows)
    index = faiss.index_factory(table.dim, f"IVF{nlist},SQfp16", faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.niter = 10
    ivf.cp.min_points_per_centroid = 1  # (cells_for keeps enough rows per cell; a 1-cell index trains on any)
    ivf.by_residual = False  # codes are the stored float16 vectors themselves: scores equal the exact ones
    sample = np.random.default_rng(0).choice(table.rows, size=min(table.rows, TRAIN_PER_CELL * nlist), replace=False)
    index.train(table.vectors_of_rows(np.sort(sample)))
    _add_rows(index, table, np.arange(table.rows))
    log.info("built the approximate index of %d vectors (%d cells) in %.1f s", table.rows, nlist,
             time.perf_counter() - t0)
    return AnnIndex(index, table.seqs.copy(), nlist, table.rows, table=table, lineage=table.lineage)


def _add_rows(index, table: VectorTable, rows: np.ndarray, chunk: int = 50_000) -> None:
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        index.add_with_ids(table.vectors_of_rows(part), table.seqs[part])


class _Files:
    def __init__(self, folder: Path, space: str, lineage: str):
        self.stem = "ann-" + re.sub(r"[^A-Za-z0-9_-]", "_", space)
        self.lineage = re.sub(r"[^A-Za-z0-9]", "", lineage)
        self.dir = Path(folder) / CACHE_DIR
        self.path = self.dir / f"{self.stem}-{self.lineage}.faiss"
        self.lock_path = self.dir / f"{self.stem}.lock"

    @contextmanager
    def lock(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(self.lock_path):
            yield

    def read(self, mapped: bool) -> AnnIndex | None:
        """The saved index; `mapped`: memory-mapped (opens at once, shared through the page cache, read-only)."""
        faiss = faiss_module()
        if not self.path.is_file():
            return None
        try:
            index = faiss.read_index(str(self.path), faiss.IO_FLAG_MMAP if mapped else 0)
            nlist = int(faiss.extract_index_ivf(index).nlist)
        except RuntimeError as exc:
            log.warning("cannot read %s (%s): building it again", self.path, exc)
            return None
        return AnnIndex(index, _ids_of(index), nlist, 0, mapped=mapped, lineage=self.lineage)

    def save(self, ann: AnnIndex) -> None:
        try:
            with atomic_path(self.path) as tmp, ann.lock:
                faiss_module().write_index(ann.index, str(tmp))
            ann.unsaved = 0
            for old in self.dir.glob(f"{self.stem}-*.faiss"):  # indexes of vector tables that are gone
                if old != self.path:
                    old.unlink(missing_ok=True)
        except (OSError, RuntimeError) as exc:
            log.warning("cannot save the approximate index to %s: %s", self.path, exc)


def _needs_training(ann: AnnIndex, table: VectorTable) -> bool:
    """The space now wants RETRAIN_RATIO times more or fewer cells, has another dimension, or is another table."""
    ratio = _ideal_cells(table.rows) / ann.nlist
    return ann.index.d != table.dim or not 1 / RETRAIN_RATIO <= ratio <= RETRAIN_RATIO or ann.lineage != table.lineage


def _in_step(ann: AnnIndex, table: VectorTable) -> AnnIndex | None:
    """Bring an index in step with the table: remove deleted rows, add new ones. None when it must be trained
    again, or changed while it is memory-mapped (then it is read again into memory)."""
    if ann.table is table:
        return ann
    if _needs_training(ann, table):
        return None
    if len(ann.seqs) == table.rows and np.array_equal(ann.seqs, table.seqs):
        ann.table = table
        return ann
    if ann.mapped:
        return None
    dead = np.setdiff1d(ann.seqs, table.seqs, assume_unique=True)
    new_rows = np.flatnonzero(~np.isin(table.seqs, ann.seqs, assume_unique=True))
    with ann.lock:
        if len(dead):
            ann.index.remove_ids(dead.astype(np.int64))
        _add_rows(ann.index, table, new_rows)
        ann.seqs = table.seqs.copy()
        ann.unsaved += len(dead) + len(new_rows)
    ann.table = table
    return ann


def index_for(folder: Path, space: str, table: VectorTable) -> AnnIndex | None:
    """The IVF index of a space, in step with `table`: this process's copy, the saved file, or built now (and
    saved for the next process). None when faiss is missing or the space is empty."""
    if table.rows == 0 or faiss_module() is None:
        return None
    key = (str(folder), space)
    files = _Files(folder, space, table.lineage)
    with _lock:
        ann = _indexes.get(key)
        ann = _in_step(ann, table) if ann is not None else None
        if ann is None:
            with files.lock():
                ann = files.read(mapped=True)  # in step as saved (the usual case): used as it is, mapped
                if ann is not None and not _needs_training(ann, table):
                    ann = _in_step(ann, table) or ((full := files.read(mapped=False)) and _in_step(full, table))
                else:
                    ann = None
                ann = ann or _build(table)
                if ann.unsaved > SAVE_FRACTION * table.rows:
                    files.save(ann)
        elif ann.unsaved > SAVE_FRACTION * table.rows:
            with files.lock():
                files.save(ann)
        _indexes[key] = ann
        return ann


def forget(folder: Path | None = None) -> None:
    """Drop this process's indexes (of one library, or all)."""
    with _lock:
        for key in [k for k in _indexes if folder is None or k[0] == str(folder)]:
            del _indexes[key]

"""Approximate nearest neighbours for large libraries: a FAISS inverted-file index over a space's vectors.

Above the `ann_threshold` setting (vectors in a space), a search without a filter, or with a broad one, asks an
IVF index (k-means cells, inner product = cosine on unit vectors) for its candidates instead of multiplying every
row. Two kinds: `IVF<nlist>,SQfp16` (float16 codes like the stored vectors: its scores are the exact ones; 1 kB
per 512-d image) and, from `ann_pq_threshold` vectors, `IVF<nlist>,PQ<m>` (m-byte product-quantized codes, 64
bytes per image: its candidates, RESCORE times more than asked for, are re-scored exactly (read with pread) from the
float16 vector cache, so the scores returned stay exact). The index is built and kept in step by index runs
(`prepare_search`, every 100k images as batches land and at the end: rows added, never a rebuild unless the
space grew or shrank about 6x), saved atomically as `<library>/cache/ann-<space>-<lineage>.faiss` and opened
memory-mapped by search processes (file-backed pages: a 10M-image PQ index does not count against a process's
anonymous memory). Its ids are the vector rows' `seq`s, so rows appended since it was saved are searched exactly
as a tail (up to TAIL_ROWS) and deleted rows are removed (the table's lineage, new whenever the table is built
afresh from the database, says whether the seqs still name the same vectors). A search builds or trains an index
only for spaces of up to SEARCH_BUILD_ROWS vectors (seconds); above that, a space without a usable index is
searched exactly until an index run builds it. Without faiss installed, search stays exact (one log line).
Figures (recall@10 against exact, latency, build time, bytes): benchmarks/query_latency.py.
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

from .. import config
from .._fs import FileLock, atomic_path
from .vectorcache import CACHE_DIR, VectorTable

log = logging.getLogger(__name__)

MIN_TRAIN_PER_CELL = 39  # faiss k-means wants at least this many training points per cell
TRAIN_PER_CELL = 40
SCAN_ROWS = 49_152  # vectors a query looks at (in whole cells)
MIN_PROBES = 16
RETRAIN_RATIO = 2.5  # train again when the cells in use and the cells the space now wants differ this much
SAVE_FRACTION = 0.01  # save the index again once this share of its rows changed since the file was written
TAIL_ROWS = 50_000  # rows appended since the saved index that a search scores exactly instead of reading it whole
SEARCH_BUILD_ROWS = 250_000  # above this, a search never builds or trains an index (an index run does)
PQ_BYTES = 64  # bytes of a PQ code (sub-quantizers at 8 bits), at most
RESCORE = 8  # a PQ search re-scores this many times the candidates asked for, exactly
MIN_RESCORE = 256
PQ_SCAN_ROWS = 98_304  # a PQ code costs a sixteenth of a float16 row to score: look at more of them
_indexes: dict[tuple[str, str], AnnIndex] = {}
_warned: set[tuple[tuple[str, str], str]] = set()
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


def probes_for(nlist: int, rows: int, kind: str = "sq") -> int:
    """Cells searched per query (nprobe): enough to look at about SCAN_ROWS vectors (PQ_SCAN_ROWS PQ codes), at
    least 16. Recall@10 then stays at 0.97-1.0 from 100k to 1M rows (benchmarks/README.md); the cost grows with
    the rows looked at, not the rows."""
    per_cell = max(rows / max(nlist, 1), 1.0)
    scan = PQ_SCAN_ROWS if kind == "pq" else SCAN_ROWS
    return int(min(nlist, max(MIN_PROBES, np.ceil(scan / per_cell))))


def pq_threshold() -> int:
    """Vectors from which a space's index holds PQ codes (0: never)."""
    return max(0, int(config.get("ann_pq_threshold")))


def kind_for(rows: int, current: str = "") -> str:
    """"pq" from ann_pq_threshold vectors (an index that is PQ already stays PQ down to half of it), else "sq"."""
    limit = pq_threshold()
    if not limit:
        return "sq"
    return "pq" if rows >= (limit / 2 if current == "pq" else limit) else "sq"


def pq_shape(dim: int, train_rows: int) -> tuple[int, int]:
    """(sub-quantizers, bits each): at most PQ_BYTES bytes, a count that divides dim, and 2^bits centroids that
    the training sample can feed (MIN_TRAIN_PER_CELL rows each), 4 to 8 bits."""
    m = max(d for d in range(1, min(dim, PQ_BYTES) + 1) if dim % d == 0)
    bits = int(np.clip(np.floor(np.log2(max(train_rows, 1) / MIN_TRAIN_PER_CELL)), 4, 8))
    return m, bits


def _kind_of(index) -> str:
    faiss = faiss_module()
    return "pq" if isinstance(faiss.downcast_index(faiss.extract_index_ivf(index)), faiss.IndexIVFPQ) else "sq"


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
    kind: str = "sq"  # "sq": float16 codes, exact scores; "pq": PQ codes, candidates re-scored exactly

    def search(self, table: VectorTable, q: np.ndarray, k: int, mask: np.ndarray | None = None,
               nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(table rows, scores) of the best `k` rows the index finds, best first; `mask` (one bool per table row)
        keeps the search to the allowed rows, and probes 1/sqrt(share allowed) times more cells (recall@10 >= 0.985
        down to a 2 % filter at 1M rows, benchmarks/README.md). Rows of `table` appended after the index's last
        one (the tail) are scored exactly and merged; a PQ index's candidates are re-scored exactly."""
        faiss = faiss_module()
        q = np.ascontiguousarray(q, dtype=np.float32)
        nprobe = nprobe or probes_for(self.nlist, len(self.seqs), self.kind)
        if mask is not None:
            nprobe = int(np.ceil(nprobe / np.sqrt(max(np.count_nonzero(mask), 1) / max(len(mask), 1))))
        params = faiss.SearchParametersIVF(nprobe=min(self.nlist, nprobe))
        if mask is not None:
            lut = np.zeros(max(table.last_seq, int(self.seqs[-1]) if len(self.seqs) else 0) + 1, dtype=bool)
            lut[table.seqs[mask]] = True
            bitmap = np.packbits(lut, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        wanted = max(int(k) * RESCORE, MIN_RESCORE) if self.kind == "pq" else int(k)
        with self.lock:
            scores, found = self.index.search(q[None], wanted, params=params)
        found, scores = found[0], scores[0]
        rows = np.minimum(np.searchsorted(table.seqs, found), max(table.rows - 1, 0))
        keep = (found >= 0) & (table.seqs[rows] == found) if table.rows else found < -1
        rows, scores = rows[keep], scores[keep]
        if self.kind == "pq" and len(rows):
            scores = table.vectors_of_rows(rows) @ q
        tail = np.arange(self.tail_start(table), table.rows)
        if mask is not None and len(tail):
            tail = tail[mask[tail]]
        if len(tail):
            rows = np.concatenate([rows, tail])
            scores = np.concatenate([scores, table.dot(q, tail)])
        best = np.argsort(-scores, kind="stable")[:int(k)]
        return rows[best], scores[best]

    def tail_start(self, table: VectorTable) -> int:
        """The first row of `table` appended after every row this index holds."""
        return int(np.searchsorted(table.seqs, self.seqs[-1], side="right")) if len(self.seqs) else 0


def _ids_of(index) -> np.ndarray:
    """Every id an IVF index holds, ascending (read from its inverted lists)."""
    faiss = faiss_module()
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    parts = [faiss.rev_swig_ptr(lists.get_ids(c), lists.list_size(c)).copy()
             for c in range(ivf.nlist) if lists.list_size(c)]
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def _build(table: VectorTable, kind: str | None = None) -> AnnIndex:
    faiss = faiss_module()
    t0 = time.perf_counter()
    kind = kind or kind_for(table.rows)
    nlist = cells_for(table.rows)
    train = min(table.rows, TRAIN_PER_CELL * nlist)
    if kind == "pq":
        m, bits = pq_shape(table.dim, train)
        spec = f"IVF{nlist},PQ{m}x{bits}"
    else:
        spec = f"IVF{nlist},SQfp16"
    index = faiss.index_factory(table.dim, spec, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.niter = 10
    ivf.cp.min_points_per_centroid = 1  # (cells_for keeps enough rows per cell; a 1-cell index trains on any)
    # SQfp16: the codes are the stored float16 vectors themselves, scores equal the exact ones. PQ: codes of the
    # residuals to the cell's centre (finer), re-scored exactly anyway.
    ivf.by_residual = kind == "pq"
    if kind == "pq":
        # index_factory's IVFPQ also trains polysemous codes (a centroid order that makes Hamming distances between
        # codes meaningful) that only a polysemous search (polysemous_ht) reads; picseek's is not one. It was 90 %
        # of a PQ build's training: 143 of 151 s on 20k rows (benchmarks/README.md).
        faiss.downcast_index(ivf).do_polysemous_training = False
    sample = np.random.default_rng(0).choice(table.rows, size=train, replace=False)
    index.train(table.vectors_of_rows(np.sort(sample)))
    _add_rows(index, table, np.arange(table.rows))
    log.info("built the approximate index (%s) of %d vectors in %.1f s", spec, table.rows, time.perf_counter() - t0)
    return AnnIndex(index, table.seqs.copy(), nlist, table.rows, table=table, lineage=table.lineage, kind=kind)


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
        return AnnIndex(index, _ids_of(index), nlist, 0, mapped=mapped, lineage=self.lineage, kind=_kind_of(index))

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


def _usable(ann: AnnIndex, table: VectorTable) -> bool:
    """Its ids name this table's vectors (same lineage) of the same dimension."""
    return ann.index.d == table.dim and ann.lineage == table.lineage


def _needs_training(ann: AnnIndex, table: VectorTable) -> bool:
    """Unusable for this table, or the space now wants RETRAIN_RATIO times more or fewer cells, or the other kind."""
    ratio = _ideal_cells(table.rows) / ann.nlist
    return (not _usable(ann, table) or not 1 / RETRAIN_RATIO <= ratio <= RETRAIN_RATIO
            or kind_for(table.rows, ann.kind) != ann.kind)


def _appended_only(ann: AnnIndex, table: VectorTable) -> bool:
    """The table holds every row of the index, and only rows appended after them besides."""
    n = len(ann.seqs)
    return n <= table.rows and bool(np.array_equal(table.seqs[:n], ann.seqs))


def _in_step(ann: AnnIndex, table: VectorTable, add: bool) -> AnnIndex | None:
    """Bring an index in step with the table: remove deleted rows, add new ones (`add`; else up to TAIL_ROWS
    appended rows are left for the search to score exactly). None when it is memory-mapped and must change (then it
    is read again into memory: changing a mapped faiss index aborts the process)."""
    if ann.table is table and not (add and ann.tail_start(table) < table.rows):
        return ann
    if _appended_only(ann, table) and (table.rows - len(ann.seqs) <= (0 if add else TAIL_ROWS)):
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


def _save_due(ann: AnnIndex, table: VectorTable) -> bool:
    return ann.unsaved > min(SAVE_FRACTION * table.rows, TAIL_ROWS // 2)


def index_for(folder: Path, space: str, table: VectorTable, build: bool | None = None) -> AnnIndex | None:
    """The IVF index of a space, in step with `table`: this process's copy, the saved file, or built now (and
    saved for the next process). `build` (an index run): train or build it whatever the size, add every new row,
    save it when enough changed. A search (`build` None) builds or trains only up to SEARCH_BUILD_ROWS rows, uses a
    usable index that wants training as it is, and leaves appended rows to the exact tail. None when faiss is
    missing, the space is empty, or (a search) no usable index exists above SEARCH_BUILD_ROWS."""
    if table.rows == 0 or faiss_module() is None:
        return None
    run = bool(build)
    may_train = run or table.rows <= SEARCH_BUILD_ROWS
    key = (str(folder), space)
    files = _Files(folder, space, table.lineage)
    with _lock:
        ann = _indexes.get(key)
        if ann is not None and not _usable(ann, table) or (ann is not None and may_train
                                                           and _needs_training(ann, table)):
            ann = None
        ann = _in_step(ann, table, run) if ann is not None else None
        if ann is None:
            with files.lock():
                ann = files.read(mapped=True)  # in step as saved (the usual case): used as it is, mapped
                if ann is not None and (not _usable(ann, table) or may_train and _needs_training(ann, table)):
                    ann = None
                if ann is not None:
                    ann = _in_step(ann, table, run) or ((full := files.read(mapped=False)) and _in_step(full, table,
                                                                                                         True))
                if ann is None and not may_train:
                    if (key, table.lineage) not in _warned:  # once per process and table
                        _warned.add((key, table.lineage))
                        log.warning("no approximate index of the %s vectors in %s yet: searched exactly until the "
                                    "next `picseek index` run builds it", f"{table.rows:,}", folder)
                    return None
                ann = ann or _build(table)
                if _save_due(ann, table):
                    files.save(ann)
        elif _save_due(ann, table):
            with files.lock():
                files.save(ann)
        _indexes[key] = ann
        return ann


def forget(folder: Path | None = None) -> None:
    """Drop this process's indexes (of one library, or all)."""
    with _lock:
        for key in [k for k in _indexes if folder is None or k[0] == str(folder)]:
            del _indexes[key]
        _warned.difference_update({w for w in _warned if folder is None or w[0][0] == str(folder)})

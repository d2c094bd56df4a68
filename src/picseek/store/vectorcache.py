"""The vectors of one space as a memory-mapped float16 matrix in files next to the database, kept in step with it.

Reading every vector blob from SQLite costs about a second per 100k rows; a copy of them in plain files
(`<library>/cache/vectors-<space>.<gen>.{seq,ids,f16}` plus `vectors-<space>.json`, which names the current
generation, its row count and the `vec_epoch` it matches) opens in milliseconds and is shared by every process
through the page cache. Vector rows are only ever inserted (with a larger `seq`) or deleted (which bumps
`vec_epoch`), so the files follow the database by appending new rows and, after deletions, by writing a new
generation without the deleted rows (older generations are removed; a process that still maps one keeps its
copy). Writers hold a file lock; a table already open is never changed under a reader. The database stays the
truth: files that disagree with it are rebuilt, and a folder that cannot be written falls back to memory.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._fs import FileLock, write_atomic

log = logging.getLogger(__name__)

CACHE_DIR = "cache"
DTYPE = np.float16
KINDS = ("seq", "ids", "f16")
_FETCH = 20_000  # rows per SQLite read
F32_MAX = 1 << 29  # values (rows x dim) up to which the whole matrix is kept as float32 (2 GB: 1M x 512)
_CHUNK = 1 << 17  # rows converted to float32 at a time above that
PREAD_ROWS = 4096  # up to this many scattered rows are read with pread, not through the memory map (see below)
Block = tuple[np.ndarray, np.ndarray, np.ndarray]  # seqs, image ids, float16 rows


@dataclass
class VectorTable:
    """Every vector of one space at one moment: row i is image ids[i], vector row seqs[i] (ascending)."""

    epoch: int
    seqs: np.ndarray
    ids: np.ndarray
    mat16: np.ndarray  # (rows, dim) float16: a memory map of the cache file, or in memory
    gen: int = -1  # the file generation it maps (-1: in memory only)
    lineage: str = ""  # changes whenever the table is built afresh from the database (kept by appends, deletions)
    path: Path | None = None  # the float16 file it maps
    inode: tuple[int, int] = (0, 0)  # (device, inode) of that file when mapped: pread only from the same file
    _f32: np.ndarray | None = field(default=None, repr=False)
    _row_of_id: np.ndarray | None = field(default=None, repr=False)

    @property
    def rows(self) -> int:
        return len(self.seqs)

    @property
    def dim(self) -> int:
        return int(self.mat16.shape[1])

    @property
    def last_seq(self) -> int:
        return int(self.seqs[-1]) if len(self.seqs) else 0

    def float32(self) -> np.ndarray:
        """The whole matrix as float32 (numpy has no fast float16 product), made once per table."""
        if self._f32 is None:
            self._f32 = np.asarray(self.mat16, dtype=np.float32)
        return self._f32

    def vectors_of_rows(self, rows: np.ndarray) -> np.ndarray:
        """float32 vectors of some rows (no whole-matrix copy needed). A few scattered rows of a mapped file (the
        re-scored candidates of a PQ search) are read with pread: through the map, the kernel maps the cached pages
        around each one too (fault-around), and a search process's RSS grew to the whole file (1 GB at 1M rows after
        20 searches; 10 GB at 10M)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._f32 is None and self.path is not None and 0 < len(rows) <= PREAD_ROWS:
            return self._pread(rows)
        source = self._f32 if self._f32 is not None else self.mat16
        return np.asarray(source[rows], dtype=np.float32)

    def _pread(self, rows: np.ndarray) -> np.ndarray:
        size = 2 * self.dim
        out = np.empty((len(rows), self.dim), dtype=DTYPE)
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:  # (a generation removed since: the map still holds it)
            return np.asarray(self.mat16[rows], dtype=np.float32)
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != self.inode:  # another file by that name now (a rebuilt cache)
                return np.asarray(self.mat16[rows], dtype=np.float32)
            with contextlib.suppress(AttributeError, OSError):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead around a 1 kB row
            for i, row in enumerate(rows.tolist()):
                out[i] = np.frombuffer(os.pread(fd, size, row * size), dtype=DTYPE)
        except (OSError, ValueError):  # (a short read: never from a file the meta names whole)
            return np.asarray(self.mat16[rows], dtype=np.float32)
        finally:
            os.close(fd)
        return out.astype(np.float32)

    def dot(self, q: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Scores of all rows (or some) against `q`: one float32 product up to F32_MAX values (the float32 copy
        made once), beyond that in chunks converted on the fly, so a 10M-row table never needs 20 GB."""
        q = np.asarray(q, dtype=np.float32)
        n = self.rows if rows is None else len(rows)
        if self._f32 is not None or (rows is None and self.rows * self.dim <= F32_MAX):
            return (self.float32() if rows is None else self.vectors_of_rows(rows)) @ q
        if n * self.dim <= F32_MAX // 4:
            return (np.asarray(self.mat16, dtype=np.float32) if rows is None else self.vectors_of_rows(rows)) @ q
        out = np.empty(n, dtype=np.float32)
        for start in range(0, n, _CHUNK):
            part = self.mat16[start:start + _CHUNK] if rows is None else self.mat16[rows[start:start + _CHUNK]]
            out[start:start + len(part)] = np.asarray(part, dtype=np.float32) @ q
        return out

    def rows_of_ids(self, ids) -> np.ndarray:
        """The row of each image id (-1 where the image has no vector in this space)."""
        if self._row_of_id is None:
            lut = np.full(int(self.ids.max(initial=0)) + 1, -1, dtype=np.int64)
            lut[self.ids] = np.arange(self.rows)
            self._row_of_id = lut
        ids = np.asarray(ids, dtype=np.int64)
        out = np.full(len(ids), -1, dtype=np.int64)
        ok = (ids >= 0) & (ids < len(self._row_of_id))
        out[ok] = self._row_of_id[ids[ok]]
        return out


def _empty(epoch: int, dim: int = 0) -> VectorTable:
    return VectorTable(epoch, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, dim), DTYPE))


def _carry(old: VectorTable | None, new: VectorTable) -> VectorTable:
    """Keep the float32 copy of `old` when `new` only appends rows to it."""
    if (old is not None and old._f32 is not None and new._f32 is None and old.rows <= new.rows
            and old.lineage == new.lineage and old.dim == new.dim and np.array_equal(old.seqs, new.seqs[:old.rows])):
        new._f32 = np.concatenate([old._f32, np.asarray(new.mat16[old.rows:], dtype=np.float32)])
    return new


# -- reading the database ---------------------------------------------------------------------------------------------
def _cursor(conn: sqlite3.Connection) -> sqlite3.Cursor:
    cur = conn.cursor()
    cur.row_factory = None  # plain tuples
    return cur


def read_rows(conn: sqlite3.Connection, space: str, after: int) -> Iterator[Block]:
    """The vector rows of `space` with seq > `after`, in seq order, in blocks."""
    cur = _cursor(conn).execute("SELECT seq, image_id, vec FROM vectors WHERE space = ? AND seq > ? ORDER BY seq",
                                (space, after))
    while rows := cur.fetchmany(_FETCH):
        seqs = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        ids = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        yield seqs, ids, np.frombuffer(b"".join(r[2] for r in rows), dtype=DTYPE).reshape(len(rows), -1)


def max_seq(conn: sqlite3.Connection, space: str) -> int:
    return _cursor(conn).execute("SELECT max(seq) FROM vectors WHERE space = ?", (space,)).fetchone()[0] or 0


def _live_seqs(conn: sqlite3.Connection, space: str, upto: int) -> np.ndarray:
    (text,) = _cursor(conn).execute("SELECT group_concat(seq) FROM vectors WHERE space = ? AND seq <= ?",
                                    (space, upto)).fetchone()
    return np.fromstring(text, dtype=np.int64, sep=",") if text else np.zeros(0, np.int64)


def _matches(conn: sqlite3.Connection, space: str, table: VectorTable, epoch: int) -> bool:
    """Do the files describe this database? Its last live row up to the files' last row is in them with the same
    image and bytes, and with the same epoch (no deletions since) the row counts agree."""
    if table.rows == 0:
        return True
    cur = _cursor(conn)
    row = cur.execute("SELECT seq, image_id, vec FROM vectors WHERE space = ? AND seq <= ? ORDER BY seq DESC "
                      "LIMIT 1", (space, table.last_seq)).fetchone()
    if row is None:
        return False
    at = int(np.searchsorted(table.seqs, row[0]))
    if at >= table.rows or table.seqs[at] != row[0] or table.ids[at] != row[1]:
        return False
    if np.asarray(table.mat16[at]).tobytes() != row[2]:
        return False
    if table.epoch == epoch:
        (count,) = cur.execute("SELECT count(*) FROM vectors WHERE space = ? AND seq <= ?",
                               (space, table.last_seq)).fetchone()
        return count == table.rows
    return True


# -- the files --------------------------------------------------------------------------------------------------------
class VectorFiles:
    """The cache files of one space of one library."""

    def __init__(self, folder: Path, space: str):
        self.dir = Path(folder) / CACHE_DIR
        self.space = space
        self.stem = "vectors-" + re.sub(r"[^A-Za-z0-9_-]", "_", space)
        self.meta_path = self.dir / f"{self.stem}.json"

    def _path(self, gen: int, kind: str) -> Path:
        return self.dir / f"{self.stem}.{gen}.{kind}"

    def read_meta(self) -> dict | None:
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return None
        keys = {"gen", "rows", "dim", "epoch", "lineage"}
        return meta if isinstance(meta, dict) and keys <= meta.keys() else None

    def _write_meta(self, gen: int, rows: int, dim: int, epoch: int, lineage: str) -> None:
        meta = json.dumps({"gen": gen, "rows": rows, "dim": dim, "epoch": epoch, "lineage": lineage}).encode()
        write_atomic(self.meta_path, lambda f: f.write(meta), fsync=False)

    def open(self, meta: dict | None) -> VectorTable | None:
        """Map the rows `meta` names (None when the files are missing or too short)."""
        if meta is None:
            return None
        try:
            n, dim, gen, epoch = int(meta["rows"]), int(meta["dim"]), int(meta["gen"]), int(meta["epoch"])
            lineage = str(meta["lineage"])
            if n == 0:
                table = _empty(epoch, dim)
                table.gen, table.lineage = gen, lineage
                return table
            seqs = np.fromfile(self._path(gen, "seq"), dtype=np.int64, count=n)
            ids = np.fromfile(self._path(gen, "ids"), dtype=np.int64, count=n)
            mat = np.memmap(self._path(gen, "f16"), dtype=DTYPE, mode="r", shape=(n, dim))
            st = os.stat(self._path(gen, "f16"))  # (the file just mapped: nothing replaces it under the lock)
        except (OSError, ValueError, TypeError):
            return None
        if len(seqs) != n or len(ids) != n:
            return None
        return VectorTable(epoch, seqs, ids, mat, gen, lineage, path=self._path(gen, "f16"),
                           inode=(st.st_dev, st.st_ino))

    @contextmanager
    def _lock(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(self.dir / f"{self.stem}.lock"):
            yield

    def _write(self, gen: int, start: int, dim: int, blocks: Iterable[Block]) -> tuple[int, int]:
        """Write blocks from row `start` of generation `gen` (new files when start is 0: a process that maps an
        older file of that name keeps it): (rows, dim)."""
        if not start:
            for k in KINDS:
                self._path(gen, k).unlink(missing_ok=True)
        handles = [open(self._path(gen, k), "r+b" if start else "wb") for k in KINDS]
        n = start
        try:
            for seqs, ids, mat in blocks:
                if dim and mat.shape[1] != dim:
                    raise ValueError(f"a {mat.shape[1]}-d vector in a {dim}-d space")
                dim = mat.shape[1]
                for fh, arr, size in zip(handles, (seqs, ids, mat), (8, 8, 2 * dim)):
                    fh.seek(n * size)
                    fh.write(np.ascontiguousarray(arr).tobytes())
                n += len(seqs)
            for fh, size in zip(handles, (8, 8, 2 * dim)):
                fh.truncate(n * size)
        except BaseException:  # (a full disk): give the space back; the meta file still names only whole rows
            with contextlib.suppress(OSError):
                for fh, size, kind in zip(handles, (8, 8, 2 * dim), KINDS):
                    if start:
                        fh.truncate(start * size)
                    else:
                        self._path(gen, kind).unlink(missing_ok=True)
            raise
        finally:
            for fh in handles:
                fh.close()
        return n, dim

    def _drop_other_generations(self, keep: int) -> None:
        for p in self.dir.glob(f"{self.stem}.*.*"):
            gen, _, kind = p.name[len(self.stem) + 1:].partition(".")
            if gen.isdigit() and int(gen) != keep and kind in KINDS:
                p.unlink(missing_ok=True)

    def sync(self, conn: sqlite3.Connection, epoch: int) -> VectorTable:
        """Bring the files in step with the database (under the lock) and map them."""
        with self._lock():
            meta = self.read_meta()
            table = self.open(meta)
            if table is not None and not _matches(conn, self.space, table, epoch):
                log.info("vector cache %s does not match the database: rebuilding it", self.stem)
                table = None
            if table is not None and table.epoch != epoch:
                table = self._drop_deleted(conn, table, epoch)
            if table is None:
                gen = int((meta or {}).get("gen", -1)) + 1
                table = self._commit(gen, *self._write(gen, 0, 0, read_rows(conn, self.space, 0)), epoch,
                                     new_lineage())
            if max_seq(conn, self.space) > table.last_seq or table.epoch != epoch:
                gen = max(table.gen, 0)
                rows, dim = self._write(gen, table.rows, table.dim, read_rows(conn, self.space, table.last_seq))
                table = self._commit(gen, rows, dim, epoch, table.lineage)
            return table

    def _commit(self, gen: int, rows: int, dim: int, epoch: int, lineage: str) -> VectorTable:
        self._write_meta(gen, rows, dim, epoch, lineage)
        self._drop_other_generations(gen)
        table = self.open(self.read_meta())
        if table is None:
            raise OSError(f"cannot read back {self.meta_path}")
        return table

    def _drop_deleted(self, conn: sqlite3.Connection, table: VectorTable, epoch: int) -> VectorTable:
        """After deletions: the same generation when none of its rows went, else a new one without them."""
        keep = np.flatnonzero(np.isin(table.seqs, _live_seqs(conn, self.space, table.last_seq), assume_unique=True))
        if len(keep) == table.rows:
            return self._commit(table.gen, table.rows, table.dim, epoch, table.lineage)
        blocks = ((table.seqs[c], table.ids[c], np.asarray(table.mat16[c]))
                  for c in (keep[s:s + _FETCH] for s in range(0, len(keep), _FETCH)))
        log.debug("vector cache %s: dropping %d deleted rows", self.stem, table.rows - len(keep))
        return self._commit(table.gen + 1, *self._write(table.gen + 1, 0, table.dim, blocks), epoch, table.lineage)


class VectorCache:
    """Per store: the current table of each space, refreshed when the database moved on (one cheap query)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._tables: dict[str, VectorTable] = {}
        self._lock = threading.Lock()
        self._files_ok = True

    def table(self, conn: sqlite3.Connection, space: str, epoch: int) -> VectorTable:
        with self._lock:
            old = self._tables.get(space)
            if old is not None and old.epoch == epoch and max_seq(conn, space) == old.last_seq:
                return old
            new = self._files_table(conn, space, epoch) if self._files_ok else None
            if new is None:
                new = _in_memory(conn, space, epoch, old)
            self._tables[space] = new = _carry(old, new)
            return new

    def _files_table(self, conn: sqlite3.Connection, space: str, epoch: int) -> VectorTable | None:
        try:
            return VectorFiles(self.folder, space).sync(conn, epoch)
        except OSError as exc:
            log.warning("cannot keep the vector cache in %s (%s): vectors are read from the database",
                        self.folder / CACHE_DIR, exc)
            self._files_ok = False
            return None

    def disk_bytes(self) -> int:
        folder = self.folder / CACHE_DIR
        return sum(p.stat().st_size for p in folder.glob("*") if p.is_file()) if folder.is_dir() else 0


def _in_memory(conn: sqlite3.Connection, space: str, epoch: int, old: VectorTable | None) -> VectorTable:
    """The table without files: read from SQLite, extended in memory while nothing is deleted."""
    base = old if old is not None and old.epoch == epoch and old.gen == -1 else None
    if base is None:
        base = _empty(epoch)
        base.lineage = new_lineage()
    blocks = list(read_rows(conn, space, base.last_seq))
    if not blocks:
        return base
    parts = [base.mat16] if base.rows else []
    return VectorTable(epoch, np.concatenate([base.seqs, *(b[0] for b in blocks)]),
                       np.concatenate([base.ids, *(b[1] for b in blocks)]),
                       np.concatenate(parts + [b[2] for b in blocks]), -1, base.lineage)


def new_lineage() -> str:
    return os.urandom(6).hex()

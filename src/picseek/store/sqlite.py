"""The embedded store: one SQLite database (WAL) holds images, metadata, vectors and per-file errors.

Every write is one transaction, so a killed process leaves the last committed state. Readers keep working while an
index run writes (WAL). Vectors are float16 blobs in the database, mirrored per space in memory-mapped cache files
(store/vectorcache.py) that follow new rows and removals (tracked by the `vec_epoch` counter that every removal bumps).
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .. import config
from ..errors import LibraryError, LibraryIOError, library_io_error
from ..paths import MARK, from_text, to_text, unmounted_mount_point
from .base import INFO_COLUMNS, MAX_ID, FileState, ImageRecord, TextRecord
from .fts import MIGRATION as FTS_MIGRATION
from .fts import TEXT_MIGRATION
from .sqlite_search import BROWSE_KEY, SQLiteSearch
from .values import field_number
from .vectorcache import VectorCache, VectorTable

DB_NAME = "picseek.db"
_tuple_new = tuple.__new__
VECTOR_DTYPE = np.float16

# Paths are stored as paths.to_text gives them (valid text; the same string for every valid UTF-8 path), and turned
# back with from_text wherever a path leaves the store. _ESCAPED selects the rows whose path was escaped.
_ESCAPED = f"instr(path, char({ord(MARK)})) > 0"

# Each entry upgrades the schema by one version; applied in order inside one transaction (PRAGMA user_version).
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        width INTEGER, height INTEGER, format TEXT, taken_at TEXT,
        camera_make TEXT, camera_model TEXT, lens TEXT, gps_lat REAL, gps_lon REAL, orientation INTEGER,
        indexed_at REAL NOT NULL
    );
    CREATE INDEX images_hash ON images(content_hash);
    CREATE TABLE vectors (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        space TEXT NOT NULL,
        vec BLOB NOT NULL,
        UNIQUE (image_id, space)
    );
    CREATE INDEX vectors_space_seq ON vectors(space, seq);
    CREATE TABLE errors (
        path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, reason TEXT NOT NULL, at REAL NOT NULL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY, started_at REAL NOT NULL, finished_at REAL, status TEXT NOT NULL,
        roots TEXT NOT NULL, stats TEXT
    );
    INSERT INTO meta VALUES ('vec_epoch', '0');
    """,
    # 2: imported/derived metadata fields (text, plus a number where the value is numeric or a date) and tags
    """
    CREATE TABLE fields (
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT,
        num REAL,
        source TEXT NOT NULL DEFAULT 'import',
        PRIMARY KEY (image_id, key)
    );
    CREATE INDEX fields_key_value ON fields(key, value);
    CREATE INDEX fields_key_num ON fields(key, num);
    CREATE TABLE tags (
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        tag TEXT NOT NULL,
        source TEXT NOT NULL,
        score REAL,
        PRIMARY KEY (image_id, tag)
    );
    CREATE INDEX tags_tag ON tags(tag);
    """,
    # 3: keyword search (FTS5) over file and folder names, text fields and tags, kept in step by triggers
    FTS_MIGRATION,
    # 4: the few paths kept escaped (names that are not valid UTF-8, paths.to_text), found without a full scan
    f"CREATE INDEX images_escaped ON images(id) WHERE {_ESCAPED}",
    # 5: browsing newest first (sqlite_search.BROWSE_KEY) with keyset paging
    f"CREATE INDEX images_browse ON images({BROWSE_KEY}, id)",
    # 6: the words read in images (OCR): `texts`, keyword search over them, the `text:` filter's tables (fts.py)
    TEXT_MIGRATION,
]
SCHEMA_VERSION = len(MIGRATIONS)
# A library that cannot be written (a read-only mount, another user's files) is opened read-only where its schema
# has every migration a search needs; what later ones add (the browse index) only makes a read faster.
READABLE_FROM = 4


def _under(roots: Sequence[str]) -> tuple[str, list]:
    """SQL condition (and parameters) for paths equal to or below any of the roots; index-friendly ranges."""
    if not roots:
        return "1", []
    parts, params = [], []
    for root in roots:
        root = to_text(root.rstrip("/") or "/")
        prefix = root if root == "/" else root + "/"
        # every path below `prefix` sorts between prefix and prefix with its last char '/' bumped to '0'
        parts.append("(path = ? OR (path >= ? AND path < ?))")
        params += [root, prefix, prefix[:-1] + "0"]
    return "(" + " OR ".join(parts) + ")", params


def _id_chunks(ids: Iterable) -> Iterable[list[int]]:
    """Image ids in chunks of bound parameters; a number outside SQLite's integers names no image (no overflow)."""
    return _chunks([i for i in map(int, ids) if 0 < i <= MAX_ID])


def _chunks(ids: list, size: int = 500):
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


class SQLiteStore(SQLiteSearch):
    """The default store. Thread-safe for readers: each thread gets its own connection."""

    def __init__(self, folder: str | Path, create: bool = True):
        self.folder = Path(folder).expanduser()
        self.db_path = self.database = self.folder / DB_NAME  # (its errors are the library's: errors.library_io_error)
        if not self.db_path.exists():
            unmounted = unmounted_mount_point(self.folder)
            if unmounted:  # the library's disk is not there: its empty mount point is no place for a new one
                raise LibraryIOError(f"no picseek library at {self.folder}: its disk is not mounted ({unmounted} is "
                                     "in /etc/fstab but not mounted now); mount it and run the same command again, "
                                     "or use another --library")
            if not create:
                raise LibraryError(f"no picseek library at {self.folder}: index a folder first "
                                   f"({config.command_for(self.folder, 'index FOLDER')})")
            self.folder.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        # (a disk mounted read-only, or files this user may not write: searched read-only, written never)
        self.read_only = self.db_path.exists() and not (os.access(self.folder, os.W_OK)
                                                        and os.access(self.db_path, os.W_OK))
        self._vectors = VectorCache(self.folder)
        self._migrate()

    # -- connections and schema -------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = self._read_only_conn() if self.read_only else sqlite3.connect(
                    self.db_path, timeout=60, isolation_level=None, check_same_thread=False, factory=_Connection)
                conn.library = self.folder
                if not self.read_only:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.DatabaseError as exc:
                raise (library_io_error(exc, self.folder, DB_NAME, "opening")
                       or LibraryError(f"cannot open library database {self.db_path}: {exc}")) from exc
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    def _read_only_conn(self) -> sqlite3.Connection:
        """A connection that never writes: `mode=ro` (which reads a WAL library where its -shm file exists), else
        `immutable=1` (a library whose last writer closed cleanly: nothing is left in a WAL file to read)."""
        uri = "file:" + urllib.parse.quote(str(self.db_path.resolve()))
        try:
            return _opened(f"{uri}?mode=ro")
        except sqlite3.DatabaseError:
            return _opened(f"{uri}?immutable=1")

    def _tx(self):
        return _Transaction(self._conn())

    def _migrate(self) -> None:
        conn = self._conn()
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise (library_io_error(exc, self.folder, DB_NAME, "opening")
                   or LibraryError(f"{self.db_path} is not a picseek library database: {exc}")) from exc
        if version > SCHEMA_VERSION:
            raise LibraryError(f"library {self.folder} was written by a newer picseek (schema {version}, this "
                               f"picseek knows {SCHEMA_VERSION}): upgrade picseek")
        if version == SCHEMA_VERSION or (self.read_only and version >= READABLE_FROM):
            return
        with self._tx() as c:
            version = c.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated
            for v in range(version, SCHEMA_VERSION):
                c.executescript_in_tx(MIGRATIONS[v])
            c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- meta ---------------------------------------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def get_model(self) -> dict | None:
        raw = self._meta("model")
        return json.loads(raw) if raw else None

    def set_model(self, model: Mapping) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES ('model', ?)", (json.dumps(dict(model)),))

    def clear_vectors(self) -> None:
        """Forget every image and vector (a rebuild with another model); errors are kept to be retried."""
        with self._tx() as c:
            c.execute("DELETE FROM vectors")
            c.execute("DELETE FROM images")
            c.execute("DELETE FROM errors")
            c.execute("DELETE FROM meta WHERE key = 'model'")
            c.execute("UPDATE meta SET value = value + 1 WHERE key = 'vec_epoch'")

    # -- what indexing reads --------------------------------------------------------------------------------------
    def file_states(self, roots: Sequence[str]) -> dict[str, FileState]:
        cond, params = _under(roots)
        cur = self._conn().cursor()
        cur.row_factory = None  # plain tuples: a re-scan reads one row per indexed file
        sql = f"SELECT id, path, size, mtime_ns, content_hash FROM images WHERE {cond}"
        states = {r[1]: _tuple_new(FileState, r) for r in cur.execute(sql, params)}  # (no Python call per row)
        for r in cur.execute(f"{sql} AND {_ESCAPED}", params):  # the rare escaped names (an index, not a scan)
            del states[r[1]]
            path = from_text(r[1])
            states[path] = FileState(r[0], path, *r[2:])
        return states

    def known_errors(self, roots: Sequence[str]) -> dict[str, tuple[int, int]]:
        cond, params = _under(roots)
        rows = self._conn().execute(f"SELECT path, size, mtime_ns FROM errors WHERE {cond}", params)
        return {from_text(r[0]): (r[1], r[2]) for r in rows}

    # -- what indexing writes -------------------------------------------------------------------------------------
    def write_images(self, records: Sequence[ImageRecord],
                     errors: Sequence[tuple[str, int, int, str]] = ()) -> None:
        """Upsert images with their vectors and record per-file errors, all in one transaction. A batch is a few
        statements, not a few per image (1.38x the rows/s of one upsert per image: benchmarks/README.md, issue 20);
        a path given twice keeps its last record."""
        now = time.time()
        removed = 0
        latest = {to_text(rec.path): rec for rec in records}
        paths = list(latest)
        with self._tx() as c:
            if paths:
                c.executemany(
                    f"INSERT INTO images (path, size, mtime_ns, content_hash, {', '.join(INFO_COLUMNS)}, "
                    f"indexed_at) VALUES (?, ?, ?, ?, {', '.join('?' * len(INFO_COLUMNS))}, ?) "
                    "ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns, "
                    "content_hash=excluded.content_hash, "
                    + ", ".join(f"{k}=excluded.{k}" for k in INFO_COLUMNS) + ", indexed_at=excluded.indexed_at",
                    [[path, rec.size, rec.mtime_ns, rec.content_hash, *(rec.info.get(k) for k in INFO_COLUMNS), now]
                     for path, rec in latest.items()])
                ids: dict[str, int] = {}
                for part in _chunks(paths):
                    ids.update(c.execute(f"SELECT path, id FROM images WHERE path IN ({', '.join('?' * len(part))})",
                                         part).fetchall())
                for part in _chunks([ids[p] for p in paths]):
                    removed += c.execute(f"DELETE FROM vectors WHERE image_id IN ({', '.join('?' * len(part))})",
                                         part).rowcount
                c.executemany("INSERT INTO vectors (image_id, space, vec) VALUES (?, ?, ?)",
                              [(ids[path], space, np.asarray(v, dtype=VECTOR_DTYPE).tobytes())
                               for path, rec in latest.items() for space, v in rec.vectors.items()])
                _write_texts(c, [(ids[path], rec.text) for path, rec in latest.items()], now)
                for part in _chunks(paths):
                    c.execute(f"DELETE FROM errors WHERE path IN ({', '.join('?' * len(part))})", part)
            for path, size, mtime_ns, reason in errors:
                path = to_text(path)
                c.execute("INSERT OR REPLACE INTO errors VALUES (?, ?, ?, ?, ?)", (path, size, mtime_ns, reason, now))
                removed += c.execute("DELETE FROM images WHERE path = ?", (path,)).rowcount
            if removed:
                c.execute("UPDATE meta SET value = value + 1 WHERE key = 'vec_epoch'")

    def write_texts(self, rows: Sequence[tuple[int, TextRecord]]) -> None:
        """(image id, words read in it) for images indexed before, in one transaction (ids no longer indexed are
        skipped)."""
        now = time.time()
        latest = {int(image_id): text for image_id, text in rows}  # (an id given twice keeps its last words)
        with self._tx() as c:
            known: set[int] = set()
            for chunk in _id_chunks(latest):
                sql = f"SELECT id FROM images WHERE id IN ({', '.join('?' * len(chunk))})"
                known.update(r[0] for r in c.execute(sql, chunk))
            _write_texts(c, [(i, text) for i, text in latest.items() if i in known], now)

    def get_texts(self, ids: Sequence[int]) -> dict[int, TextRecord]:
        """The words read in each image that was read (images never read are left out)."""
        out: dict[int, TextRecord] = {}
        if self.read_only and not self._has_texts():
            return out  # (a read-only library from before schema 6: searched without migrating)
        for chunk in _id_chunks(ids):
            rows = self._conn().execute(f"SELECT image_id, text, lines, error FROM texts WHERE image_id IN "
                                        f"({', '.join('?' * len(chunk))})", chunk)
            out.update({r[0]: TextRecord(r[1], json.loads(r[2]), r[3]) for r in rows})
        return out

    def missing_texts(self, roots: Sequence[str]) -> list[FileState]:
        """The indexed images below `roots` whose words were never read, in path order."""
        cond, params = _under(roots)
        rows = self._conn().execute(f"SELECT id, path, size, mtime_ns, content_hash FROM images WHERE {cond} AND "
                                    "id NOT IN (SELECT image_id FROM texts) ORDER BY path", params)
        return [FileState(r[0], from_text(r[1]), r[2], r[3], r[4]) for r in rows]

    def move(self, moves: Iterable[tuple[int, str, int, int]]) -> None:
        """(image id, new path, size, mtime_ns): a file that moved keeps its vectors."""
        with self._tx() as c:
            c.executemany("UPDATE images SET path = ?, size = ?, mtime_ns = ? WHERE id = ?",
                          [(to_text(p), s, m, i) for i, p, s, m in moves])

    def delete_paths(self, paths: Iterable[str]) -> int:
        paths = list(paths)
        if not paths:
            return 0
        with self._tx() as c:
            n = 0
            for p in map(to_text, paths):
                n += c.execute("DELETE FROM images WHERE path = ?", (p,)).rowcount
                c.execute("DELETE FROM errors WHERE path = ?", (p,))
            if n:
                c.execute("UPDATE meta SET value = value + 1 WHERE key = 'vec_epoch'")
        return n

    def delete_under(self, roots: Sequence[str]) -> int:
        """Forget every image (and error) at or below the roots; files on disk are not touched."""
        cond, params = _under(roots)
        with self._tx() as c:
            n = c.execute(f"DELETE FROM images WHERE {cond}", params).rowcount
            c.execute(f"DELETE FROM errors WHERE {cond}", params)
            if n:
                c.execute("UPDATE meta SET value = value + 1 WHERE key = 'vec_epoch'")
        return n

    def start_run(self, roots: Sequence[str]) -> int:
        with self._tx() as c:
            cur = c.execute("INSERT INTO runs (started_at, status, roots) VALUES (?, 'running', ?)",
                            (time.time(), json.dumps(list(roots))))
            return cur.lastrowid

    def finish_run(self, run_id: int, status: str, stats: Mapping) -> None:
        with self._tx() as c:
            c.execute("UPDATE runs SET finished_at = ?, status = ?, stats = ? WHERE id = ?",
                      (time.time(), status, json.dumps(dict(stats)), run_id))

    # -- what search reads ----------------------------------------------------------------------------------------
    def vectors(self, space: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 matrix) of every vector in `space`, kept in step with the db."""
        table = self.vector_table(space)
        return table.ids, table.float32()

    def vector_table(self, space: str) -> VectorTable:
        """Every vector of `space` as a float16 memory map (rows, image ids, seqs), kept in step with the db."""
        return self._vectors.table(self._conn(), space, int(self._meta("vec_epoch") or 0))

    def vector_of(self, image_id: int, space: str) -> np.ndarray | None:
        return self.vectors_of([image_id], space).get(int(image_id))

    def vectors_of(self, image_ids: Sequence[int], space: str) -> dict[int, np.ndarray]:
        out = {}
        for chunk in _id_chunks(image_ids):
            rows = self._conn().execute(f"SELECT image_id, vec FROM vectors WHERE space = ? AND image_id IN "
                                        f"({', '.join('?' * len(chunk))})", (space, *chunk))
            out.update((r[0], np.frombuffer(r[1], dtype=VECTOR_DTYPE).astype(np.float32)) for r in rows)
        return out

    def spaces(self) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT DISTINCT space FROM vectors")]

    def get_images(self, ids: Sequence[int]) -> dict[int, dict]:
        out = {}
        for chunk in _id_chunks(ids):
            rows = self._conn().execute(f"SELECT * FROM images WHERE id IN ({', '.join('?' * len(chunk))})", chunk)
            for r in rows:
                row = out[r["id"]] = dict(r)
                row["path"] = from_text(row["path"])
        return out

    def find_path(self, path: str) -> int | None:
        row = self._conn().execute("SELECT id FROM images WHERE path = ?", (to_text(path),)).fetchone()
        return row[0] if row else None

    # -- metadata fields and tags -------------------------------------------------------------------------------
    def set_fields(self, rows: Iterable[tuple[int, Mapping[str, object]]], source: str = "import") -> int:
        """(image id, {key: value}) pairs -> upserted fields; None values delete the key. Returns fields written.
        Numbers (and ISO dates, as days since 1970) are also kept in `num` so filters can compare them."""
        n = 0
        with self._tx() as c:
            for image_id, values in rows:
                for key, value in values.items():
                    if value is None:
                        c.execute("DELETE FROM fields WHERE image_id = ? AND key = ?", (image_id, key))
                        continue
                    text = value if isinstance(value, str) else json.dumps(value) if isinstance(
                        value, (list, dict)) else str(value)
                    c.execute("INSERT OR REPLACE INTO fields (image_id, key, value, num, source) "
                              "VALUES (?, ?, ?, ?, ?)", (image_id, key, text, field_number(value), source))
                    n += 1
        return n

    def get_fields(self, ids: Sequence[int]) -> dict[int, dict[str, str]]:
        out: dict[int, dict[str, str]] = {int(i): {} for i in ids}
        for chunk in _id_chunks(ids):
            rows = self._conn().execute(
                f"SELECT image_id, key, value FROM fields WHERE image_id IN ({', '.join('?' * len(chunk))})", chunk)
            for image_id, key, value in rows:
                out[image_id][key] = value
        return out

    def field_values(self, key: str) -> dict[int, str]:
        """image id -> value of one field, for every image that has it (e.g. `url`, to join rows by URL)."""
        rows = self._conn().execute("SELECT image_id, value FROM fields WHERE key = ?", (key,))
        return {r[0]: r[1] for r in rows}

    def add_tags(self, rows: Iterable[tuple[int, str, str, float | None]]) -> int:
        """(image id, tag, source, score) -> upserted tags (tags are stored lower-case, trimmed)."""
        rows = [(i, t.strip().lower(), src, score) for i, t, src, score in rows if t and t.strip()]
        with self._tx() as c:
            c.executemany("INSERT OR REPLACE INTO tags (image_id, tag, source, score) VALUES (?, ?, ?, ?)", rows)
        return len(rows)

    def remove_tags(self, image_ids: Sequence[int], tags: Sequence[str]) -> int:
        n = 0
        with self._tx() as c:
            for i in image_ids:
                for t in tags:
                    n += c.execute("DELETE FROM tags WHERE image_id = ? AND tag = ?", (i, t.strip().lower())).rowcount
        return n

    def get_tags(self, ids: Sequence[int]) -> dict[int, list[dict]]:
        out: dict[int, list[dict]] = {int(i): [] for i in ids}
        for chunk in _id_chunks(ids):
            rows = self._conn().execute(
                f"SELECT image_id, tag, source, score FROM tags WHERE image_id IN ({', '.join('?' * len(chunk))}) "
                "ORDER BY image_id, tag", chunk)
            for image_id, tag, source, score in rows:
                out[image_id].append({"tag": tag, "source": source, "score": score})
        return out

    def replace_auto_tags(self, tags: Sequence[str], rows: Iterable[tuple[int, str, float]]) -> int:
        """Drop the automatic tags named `tags`, then add (image id, tag, score) rows as source "auto"; a tag the
        image already has from another source (the user, an import) is kept as it is. One transaction."""
        tags = [t.strip().lower() for t in tags]
        n = 0
        with self._tx() as c:
            for chunk in _chunks(tags):
                c.execute(f"DELETE FROM tags WHERE source = 'auto' AND tag IN ({', '.join('?' * len(chunk))})",
                          chunk)
            for i, tag, score in rows:
                n += c.execute("INSERT INTO tags (image_id, tag, source, score) VALUES (?, ?, 'auto', ?) "
                               "ON CONFLICT (image_id, tag) DO NOTHING", (i, tag.strip().lower(), score)).rowcount
        return n

    def read(self, sql: str, params: Sequence = ()) -> list[sqlite3.Row]:
        """Rows of one read-only statement (query helpers build the SQL; values always go in `params`)."""
        return self._conn().execute(sql, tuple(params)).fetchall()

    def read_ids(self, sql: str, params: Sequence = ()) -> np.ndarray:
        """The first column of a read-only statement as an int64 array (e.g. the ids a filter allows)."""
        cur = self._conn().cursor()
        cur.row_factory = None  # plain tuples: several times faster than Row objects for many rows
        return np.fromiter((r[0] for r in cur.execute(sql, tuple(params))), dtype=np.int64)

    def read_id_set(self, sql: str, params: Sequence = ()) -> np.ndarray:
        """The ids a read-only statement selects (first column), unordered: aggregated in SQLite and parsed in
        one numpy call, 3-5x faster than fetching the rows one by one."""
        (text,) = self._conn().execute(f"WITH s(x) AS ({sql}) SELECT group_concat(x) FROM s", tuple(params)).fetchone()
        return np.fromstring(text, dtype=np.int64, sep=",") if text else np.zeros(0, dtype=np.int64)

    def change_stamp(self) -> tuple[int, int, int]:
        """Changes whenever the database may have changed for this thread's connection: commits by any other
        connection (PRAGMA data_version) or by this one (total_changes). For caches of query results."""
        conn = self._conn()
        return threading.get_ident(), conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes

    def roots(self) -> list[str]:
        """Every folder an index run was asked to index (for folder filters relative to them)."""
        seen: dict[str, None] = {}
        for (raw,) in self._conn().execute("SELECT roots FROM runs ORDER BY id"):
            seen.update(dict.fromkeys(json.loads(raw)))
        return list(seen)

    def count(self) -> int:
        return self._conn().execute("SELECT count(*) FROM images").fetchone()[0]

    def is_empty(self) -> bool:
        return not self._conn().execute("SELECT 1 FROM images LIMIT 1").fetchone()

    def errors(self, limit: int | None = None) -> list[dict]:
        sql = "SELECT path, reason, size, at FROM errors ORDER BY path"
        rows = self._conn().execute(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ())
        return [dict(r) | {"path": from_text(r["path"])} for r in rows]

    def error_count(self) -> int:
        return self._conn().execute("SELECT count(*) FROM errors").fetchone()[0]

    def last_run(self) -> dict | None:
        row = self._conn().execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        run = dict(row)
        run["roots"] = json.loads(run["roots"])
        run["stats"] = json.loads(run["stats"]) if run["stats"] else None
        return run

    def disk_bytes(self) -> int:
        """The database (with its WAL) and the caches next to it."""
        return sum(p.stat().st_size for p in self.folder.glob(DB_NAME + "*") if p.is_file()) + \
            self._vectors.disk_bytes()


def _write_texts(c, rows: Sequence[tuple[int, TextRecord | None]], now: float) -> None:
    """Replace the words of images (image id, words; None: drop them; each id once), one statement per batch: an
    upsert for those with words (an UPDATE where the image had some: its triggers refresh the keyword tables once,
    where a REPLACE would not run the delete triggers at all), a DELETE for the others."""
    c.executemany("INSERT INTO texts (image_id, text, lines, error, read_at) VALUES (?, ?, ?, ?, ?) "
                  "ON CONFLICT(image_id) DO UPDATE SET text=excluded.text, lines=excluded.lines, "
                  "error=excluded.error, read_at=excluded.read_at",
                  [(i, t.text, json.dumps(list(t.lines)), t.error, now) for i, t in rows if t is not None])
    for chunk in _chunks([i for i, t in rows if t is None]):
        c.execute(f"DELETE FROM texts WHERE image_id IN ({', '.join('?' * len(chunk))})", chunk)


def _opened(uri: str) -> sqlite3.Connection:
    """A connection to a database URI, checked by reading its schema (SQLite opens lazily)."""
    conn = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None, check_same_thread=False,
                           factory=_Connection)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn


class _Connection(sqlite3.Connection):
    """A connection that knows its library folder (`library`), for the message of a disk error."""


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (the connection runs in autocommit mode). A disk
    error (full, read-only, permission, gone, I/O) leaves as one LibraryIOError (errors.library_io_error); the
    database keeps its last committed transaction."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> _Transaction:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if err := self._disk_error(exc):
                raise err from exc
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.Error as commit_error:
                exc = commit_error
        if self.conn.in_transaction:  # (SQLite may have rolled back by itself: SQLITE_FULL, SQLITE_IOERR)
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:  # a failing disk may refuse this too; the next open rolls back from the WAL
                pass
        if isinstance(exc, sqlite3.Error) and (err := self._disk_error(exc)):
            raise err from exc
        if exc_type is None:
            raise exc  # a COMMIT that failed for another reason

    def _disk_error(self, exc: sqlite3.Error) -> LibraryIOError | None:
        library = getattr(self.conn, "library", None)
        return library_io_error(exc, library, DB_NAME) if library is not None else None

    def execute(self, sql: str, params=()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows) -> sqlite3.Cursor:
        return self.conn.executemany(sql, rows)

    def executescript_in_tx(self, script: str) -> None:
        # executescript() would COMMIT first; run the statements one by one inside the open transaction
        # (a piece between semicolons is joined to the next until it is a complete statement: triggers)
        statement = ""
        for piece in script.split(";"):
            statement += piece + ";"
            if sqlite3.complete_statement(statement):
                if statement.strip(" \n\t;"):
                    self.conn.execute(statement)
                statement = ""

"""The ChromaDB side of the ChromaDB store: the connection, the collections of one picseek collection name, paging,
and picseek's own records in NAME.state (the id counter, per-file errors, index runs; chroma_search.py keeps the
stamp of the words read in images there). chroma.py builds the Store protocol on it."""
from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence

from ..errors import LibraryError, UsageError
from ..models.base import MAIN
from ..paths import from_text, to_text
from .location import ChromaLocation

PAGE = 2000  # records per get/upsert call (ChromaDB caps a batch at about 5000)
STATE = "state"
PLACEHOLDER = [1.0]  # state records carry no vector of their own
MODEL_KEY = "picseek_model"
SCHEMA = 2  # 2: documents carry tag, field and keyword lines (chroma_records.py)
COSINE = {"hnsw": {"space": "cosine"}}
_CLIENTS: dict[tuple, object] = {}  # one client per server or folder and process (making one costs ~0.3 s)


def translated(method):
    """ChromaDB and connection failures become one clear LibraryError (never a traceback)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        from chromadb.errors import ChromaError
        try:
            return method(self, *args, **kwargs)
        except ChromaError as exc:
            self._cols.clear()  # e.g. a collection another process dropped and made again (--rebuild)
            raise LibraryError(f"ChromaDB store {self.url}: {exc}") from exc
        except OSError as exc:  # httpx's connection errors are OSErrors underneath; so are disk errors
            raise LibraryError(f"ChromaDB store {self.url}: {exc}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("httpx"):
                raise LibraryError(f"lost the ChromaDB server at {self.url}: {exc}") from exc
            raise
    return wrapper


def chunks(items: Sequence, size: int = PAGE) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def error_id(path: str) -> str:
    """The state record of a path's error (from the path as the OS spells it)."""
    return "e:" + hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:40]


def under_where(roots: Sequence[str]) -> dict | None:
    """Records at or below any of the roots (None: all)."""
    conds: list[dict] = []
    for root in roots:
        root = to_text(root.rstrip("/") or "/")
        conds += [{"path": root}, {"dirs": {"$contains": root}}]
    return None if not conds else conds[0] if len(conds) == 1 else {"$or": conds}


def all_of(*conds: dict | None) -> dict | None:
    conds = tuple(c for c in conds if c)
    return None if not conds else conds[0] if len(conds) == 1 else {"$and": list(conds)}


class ChromaCollections:
    """One picseek collection name in a ChromaDB server or folder: NAME, NAME.SPACE, NAME.state."""

    def __init__(self, location: ChromaLocation, create: bool = True):
        self.location, self.name, self.url = location, location.collection, location.url
        self.label = f"the ChromaDB store {self.url}"
        self._cols: dict[str, object] = {}
        key = (location.host, location.port, location.path)
        self.client = _CLIENTS.get(key) or _CLIENTS.setdefault(key, self._connect(create))
        self._check_collection(create)

    # -- connection and collections --------------------------------------------------------------------------
    def _connect(self, create: bool):
        try:
            import chromadb
            from chromadb.config import Settings
        except ImportError as exc:
            raise UsageError(f"the ChromaDB store needs its extra: pip install 'picseek[chroma]' ({exc.name} is "
                             "missing)") from None
        settings = Settings(anonymized_telemetry=False)
        loc = self.location
        if loc.path:
            if not create and not os.path.isdir(loc.path):
                raise LibraryError(f"no ChromaDB folder at {loc.path}: index a folder first "
                                   f"(picseek --store {self.url} index FOLDER)")
            try:
                return chromadb.PersistentClient(path=loc.path, settings=settings)
            except Exception as exc:
                raise LibraryError(f"cannot open the ChromaDB folder {loc.path}: {exc}") from exc
        try:
            return chromadb.HttpClient(host=loc.host, port=loc.port, settings=settings)
        except Exception as exc:  # ValueError "Could not connect", or an HTTP error from something else on the port
            raise LibraryError(f"cannot reach a ChromaDB server at {loc.host}:{loc.port} ({exc}); start one with: "
                               f"chroma run --host {loc.host} --port {loc.port} --path DIR") from None

    def _col_name(self, space: str) -> str:
        return self.name if space == MAIN else f"{self.name}.{space}"

    def _col(self, space: str = MAIN, create: bool = False):
        """The collection of a space (or STATE); None when it does not exist and `create` is false."""
        name = self._col_name(space)
        col = self._cols.get(name)
        if col is None:
            from chromadb.errors import NotFoundError
            try:
                col = self.client.get_collection(name, embedding_function=None)
            except NotFoundError:
                if not create:
                    return None
                col = self.client.get_or_create_collection(name, embedding_function=None, configuration=COSINE,
                                                           metadata={"picseek": SCHEMA})
            self._cols[name] = col
        return col

    @translated
    def _check_collection(self, create: bool) -> None:
        main = self._col(MAIN)
        if main is None:
            if not create:
                raise LibraryError(f"no picseek collection {self.name!r} at {self.url}: index a folder first "
                                   f"(picseek --store {self.url} index FOLDER)")
            return
        meta = main.metadata or {}
        if "picseek" not in meta and main.count():
            raise LibraryError(f"collection {self.name!r} at {self.url} was not made by picseek: name another one")
        if int(meta.get("picseek", SCHEMA)) > SCHEMA:
            raise LibraryError(f"collection {self.name!r} was written by a newer picseek: upgrade picseek")

    def _spaces(self) -> list[str]:
        """Every space that has a collection, "main" first."""
        prefix = self.name + "."
        names = [c if isinstance(c, str) else c.name for c in self.client.list_collections()]
        rest = sorted(n[len(prefix):] for n in names if n.startswith(prefix) and n != prefix + STATE)
        return ([MAIN] if self.name in names else []) + rest

    def _pages(self, col, where: dict | None = None, include: Sequence[str] = ("metadatas",),
               where_document: dict | None = None) -> Iterator[dict]:
        if col is None:
            return
        offset = 0
        while True:
            got = col.get(where=where, where_document=where_document, include=list(include), limit=PAGE,
                          offset=offset)
            if not got["ids"]:
                return
            yield got
            if len(got["ids"]) < PAGE:
                return
            offset += PAGE

    def _all_metadatas(self, col, where: dict | None = None) -> Iterator[dict]:
        for page in self._pages(col, where):
            yield from page["metadatas"]

    # -- state records: the id counter, errors, runs -----------------------------------------------------------
    def _state(self):
        return self._col(STATE, create=True)

    def _reserve(self, n: int, key: str = "next_id") -> range:
        """n fresh ids (or run numbers), reserved before they are used: a killed run leaves a gap, never a reuse."""
        state = self._state()
        got = state.get(ids=["counter"], include=["metadatas"])
        counter = dict(got["metadatas"][0]) if got["ids"] else {"kind": "counter"}
        if key not in counter:
            counter[key] = self._max_pid() + 1 if key == "next_id" else 1
        start = int(counter[key])
        counter[key] = start + n
        state.upsert(ids=["counter"], embeddings=[PLACEHOLDER], metadatas=[counter])
        return range(start, start + n)

    def _max_pid(self) -> int:
        return max((int(i) for page in self._pages(self._col(MAIN), include=()) for i in page["ids"]), default=0)

    def _delete_errors(self, paths: Iterable[str] | None) -> None:
        state = self._col(STATE)
        if state is None:
            return
        if paths is None:
            ids = [i for page in self._pages(state, {"kind": "error"}, ()) for i in page["ids"]]
        else:  # only those that exist: a get is much cheaper than a delete in ChromaDB
            wanted = [error_id(p) for p in paths]
            ids = [i for chunk in chunks(wanted) for i in state.get(ids=list(chunk), include=[])["ids"]]
        for chunk in chunks(ids):
            state.delete(ids=list(chunk))

    def _runs(self) -> list[dict]:
        runs = [dict(m) for m in self._all_metadatas(self._col(STATE), {"kind": "run"})]
        return sorted(runs, key=lambda r: r["run"])

    @translated
    def roots(self) -> list[str]:
        """Every folder an index run was asked to index (for folder filters relative to them)."""
        seen: dict[str, None] = {}
        for run in self._runs():
            seen.update(dict.fromkeys(json.loads(run["roots"])))
        return list(seen)

    @translated
    def last_run(self) -> dict | None:
        runs = self._runs()
        if not runs:
            return None
        run = runs[-1]
        return {"id": run["run"], "started_at": run["started_at"], "finished_at": run.get("finished_at"),
                "status": run["status"], "roots": json.loads(run["roots"]),
                "stats": json.loads(run["stats"]) if run.get("stats") else None}

    @translated
    def errors(self, limit: int | None = None) -> list[dict]:
        rows = sorted(({"path": from_text(m["path"]), "reason": m["reason"], "size": m["size"], "at": m["at"]}
                       for m in self._all_metadatas(self._col(STATE), {"kind": "error"})), key=lambda r: r["path"])
        return rows[:limit] if limit else rows

    @translated
    def error_count(self) -> int:
        return sum(len(page["ids"]) for page in self._pages(self._col(STATE), {"kind": "error"}, ()))

    def disk_bytes(self) -> int:
        """Bytes of an embedded ChromaDB folder; 0 for a server (its disk is the server's)."""
        if not self.location.path:
            return 0
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(self.location.path) for f in files)

    def close(self) -> None:
        self._cols.clear()


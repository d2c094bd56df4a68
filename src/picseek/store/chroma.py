"""ChromaDB as the store: vectors and metadata in a ChromaDB server (HTTP) or an embedded ChromaDB folder.

For a collection NAME picseek keeps:
  NAME          the "main" space: one record per image (id: the picseek id as a string; metadata and document as
                chroma_records.py describes; cosine distance). Its collection metadata records the model.
  NAME.SPACE    one collection per further space of the model (the built-in model's "image"), same ids and metadata
  NAME.state    picseek's own records: per-file errors, index runs, the id counter, the stamp of the words read in
                images (chroma_search.py) (each with a 1-d placeholder)

ChromaDB has no transactions across calls, so writes are ordered to be safe when a run is killed: ids are reserved
before they are used, further spaces are written before NAME (which is what the next scan reads), removals leave NAME
first; a new run deletes records a killed run left in further spaces only. Search runs in ChromaDB (HNSW, with the
filters chroma_search.py compiles); keyword search ranks the records ChromaDB's document filter finds
(chroma_search.py). Imported fields and tags live in each record (chroma_records.py): changing them rewrites the
image's record in every space (further spaces first, main last, like any write).
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..errors import LibraryError
from ..models.base import MAIN
from ..paths import from_text, to_text
from .base import MAX_ID, FileState, ImageRecord, TextRecord
from .chroma_base import (
    MODEL_KEY,
    PLACEHOLDER,
    SCHEMA,
    STATE,
    ChromaCollections,
    all_of,
    chunks,
    error_id,
    translated,
    under_where,
)
from .chroma_records import (
    HAS_TEXT,
    ancestors,
    carried,
    fields_of,
    filter_document,
    image_metadata,
    row_of,
    tags_of,
    text_metadata,
    text_of,
    with_fields,
    with_tags,
    without_none,
)
from .chroma_search import ChromaSearch, join, line_is, regex_literal

log = logging.getLogger(__name__)


class ChromaStore(ChromaSearch, ChromaCollections):
    """The Store protocol over ChromaDB (see the module docstring for the layout)."""

    database = None  # (no local database: ChromaDB's own errors are translated where they happen)

    def __init__(self, location, create: bool = True):
        super().__init__(location, create)
        self._upgrade()

    @translated
    def _upgrade(self) -> None:
        """A collection from an older picseek (schema 1: no keyword, tag or field lines in its documents) gets
        its documents written again, once."""
        main = self._col(MAIN)
        meta = dict(main.metadata or {}) if main is not None else {}
        if main is None or int(meta.get("picseek", SCHEMA)) >= SCHEMA:
            return
        with self._changing_texts():
            for page in list(self._pages(main)):
                self._write_metadata(dict(zip(page["ids"], page["metadatas"])))
        main.modify(metadata=meta | {"picseek": SCHEMA})

    # -- model ------------------------------------------------------------------------------------------------
    @translated
    def get_model(self) -> dict | None:
        main = self._col(MAIN)
        raw = (main.metadata or {}).get(MODEL_KEY) if main is not None else None
        return json.loads(raw) if raw else None

    @translated
    def set_model(self, model: Mapping) -> None:
        if STATE in dict(model.get("spaces") or {}):
            raise LibraryError(f"a model space may not be called {STATE!r} in the ChromaDB store")
        self._col(MAIN, create=True).modify(metadata={"picseek": SCHEMA, MODEL_KEY: json.dumps(dict(model))})

    @translated
    def clear_vectors(self) -> None:
        """Forget every image and vector and the model (a rebuild); runs are kept."""
        with self._changing_texts():
            for space in self._spaces():
                self.client.delete_collection(self._col_name(space))
            self._cols.clear()
        self._delete_errors(None)

    def _ids_of_paths(self, paths: Sequence[str]) -> dict[str, int]:
        return {p: int(m["pid"]) for p, m in self._records_of_paths(paths).items()}

    def _records_of_paths(self, paths: Sequence[str]) -> dict[str, dict]:
        """path -> the main record's metadata, for the paths that have one."""
        main, out = self._col(MAIN), {}
        if main is None:
            return out
        for chunk in chunks(list(dict.fromkeys(map(to_text, paths)))):
            got = main.get(where={"path": {"$in": list(chunk)}}, include=["metadatas"])
            out.update({from_text(m["path"]): m for m in got["metadatas"]})
        return out

    def _delete_ids(self, ids: Sequence[int]) -> None:
        """Main first (what the next scan reads), then the further spaces."""
        keys = [str(i) for i in ids]
        for space in self._spaces():
            for chunk in chunks(keys):
                self._col(space).delete(ids=list(chunk))

    # -- what indexing reads ----------------------------------------------------------------------------------
    @translated
    def file_states(self, roots: Sequence[str]) -> dict[str, FileState]:
        states = (FileState(int(m["pid"]), from_text(m["path"]), int(m["size"]), int(m["mtime_ns"]), m["content_hash"])
                  for m in self._all_metadatas(self._col(MAIN), under_where(roots)))
        return {s.path: s for s in states}

    @translated
    def known_errors(self, roots: Sequence[str]) -> dict[str, tuple[int, int]]:
        where = all_of({"kind": "error"}, under_where(roots))
        return {from_text(m["path"]): (int(m["size"]), int(m["mtime_ns"]))
                for m in self._all_metadatas(self._col(STATE), where)}

    # -- what indexing writes ---------------------------------------------------------------------------------
    @translated
    def write_images(self, records: Sequence[ImageRecord],
                     errors: Sequence[tuple[str, int, int, str]] = ()) -> None:
        """Upsert images with their vectors (further spaces first, main last) and record per-file errors."""
        with self._changing_texts() as change:
            change.words = self._write_images(records, errors)

    def _write_images(self, records: Sequence[ImageRecord], errors: Sequence[tuple[str, int, int, str]]) -> bool:
        """write_images; whether the words read in the records changed (some written, or a record that had some
        rewritten or removed)."""
        now = time.time()
        records = list({r.path: r for r in records}.values())
        if any(MAIN not in r.vectors for r in records):
            raise LibraryError("every image needs a vector in the main space")
        words = any(r.text is not None and r.text.text for r in records)
        if records:
            old = self._records_of_paths([r.path for r in records])
            words = words or any(m.get(HAS_TEXT) for m in old.values())
            ids = {p: int(m["pid"]) for p, m in old.items()}
            new = [r.path for r in records if r.path not in ids]
            ids.update(zip(new, self._reserve(len(new))))
            metas = [image_metadata(ids[r.path], r.path, r.size, r.mtime_ns, r.content_hash, r.info, now)
                     | carried(old.get(r.path, {})) | text_metadata(r.text)
                     for r in records]  # (a changed file keeps its fields and tags; its words are read again)
            docs = [filter_document(m) for m in metas]
            fresh = set(new)
            spaces = sorted({s for r in records for s in r.vectors}, key=lambda s: (s == MAIN, s))
            for space in spaces:
                col = self._col(space, create=True)
                for is_new in (True, False):  # fresh ids are never in use (reserved): `add` is ~30% faster
                    rows = [k for k, r in enumerate(records) if space in r.vectors and (r.path in fresh) == is_new]
                    for chunk in chunks(rows):
                        (col.add if is_new else col.upsert)(
                            ids=[str(ids[records[k].path]) for k in chunk],
                            metadatas=[without_none(metas[k]) if is_new else metas[k] for k in chunk],
                            embeddings=np.stack([np.asarray(records[k].vectors[space], np.float32) for k in chunk]),
                            documents=[docs[k] for k in chunk])
            self._delete_errors([r.path for r in records])
        if errors:
            gone = self._records_of_paths([e[0] for e in errors])
            words = words or any(m.get(HAS_TEXT) for m in gone.values())
            self._delete_ids([int(m["pid"]) for m in gone.values()])
            rows = [(error_id(p), {"kind": "error", "path": to_text(p), "size": int(s), "mtime_ns": int(m),
                                   "reason": str(reason), "at": now, "dirs": ancestors(to_text(p))})
                    for p, s, m, reason in errors]
            state = self._state()
            for chunk in chunks(rows):
                state.upsert(ids=[k for k, _ in chunk], embeddings=[PLACEHOLDER] * len(chunk),
                             metadatas=[r for _, r in chunk])
        return words

    @translated
    def move(self, moves: Iterable[tuple[int, str, int, int]]) -> None:
        """(image id, new path, size, mtime_ns): a file that moved keeps its id and vectors."""
        moves = {int(i): (p, s, m) for i, p, s, m in moves}
        if not moves:
            return
        now_meta = {}
        for chunk in chunks(list(moves)):
            got = self._col(MAIN).get(ids=[str(i) for i in chunk], include=["metadatas"])
            for i, old in zip(got["ids"], got["metadatas"]):
                path, size, mtime = moves[int(i)]
                now_meta[i] = image_metadata(int(i), path, size, mtime, old["content_hash"], old,
                                             old.get("indexed_at", 0.0)) | carried(old, text=True)
        self._write_metadata(now_meta)

    def _write_metadata(self, metas: dict[str, dict]) -> None:
        """Replace records' metadata and documents (id -> metadata) in every space, main last."""
        for space in sorted(self._spaces(), key=lambda s: s == MAIN):  # main last
            col = self._col(space)
            for chunk in chunks(list(metas)):
                # ChromaDB embeds a new document itself unless given the vectors: hand them back unchanged
                got = col.get(ids=list(chunk), include=["embeddings"])
                rows = [metas[k] for k in got["ids"]]
                if rows:
                    col.update(ids=got["ids"], embeddings=got["embeddings"], metadatas=rows,
                               documents=[filter_document(m) for m in rows])

    def _change(self, ids: Sequence[int], change) -> int:
        """Apply `change(metadata) -> metadata or None (unchanged)` to the main records of `ids` and write the
        changed ones to every space; returns how many changed."""
        main, changed = self._col(MAIN), {}
        for chunk in chunks([str(int(i)) for i in dict.fromkeys(ids)]) if main is not None else ():
            got = main.get(ids=list(chunk), include=["metadatas"])
            for i, meta in zip(got["ids"], got["metadatas"]):
                new = change(dict(meta))
                if new is not None:
                    changed[i] = new
        self._write_metadata(changed)
        return len(changed)

    @translated
    def delete_paths(self, paths: Iterable[str]) -> int:
        paths = list(paths)
        if not paths:
            return 0
        ids = self._ids_of_paths(paths)
        if ids:
            with self._changing_texts():
                self._delete_ids(list(ids.values()))
        self._delete_errors(paths)
        return len(ids)

    @translated
    def delete_under(self, roots: Sequence[str]) -> int:
        """Forget every image (and error) at or below the roots; files on disk are not touched."""
        where = under_where(roots)
        ids = [int(i) for page in self._pages(self._col(MAIN), where, ()) for i in page["ids"]]
        if ids:
            with self._changing_texts():
                self._delete_ids(ids)
        errors = [from_text(m["path"]) for m in self._all_metadatas(self._col(STATE), all_of({"kind": "error"}, where))]
        self._delete_errors(errors)
        return len(ids)

    @translated
    def start_run(self, roots: Sequence[str]) -> int:
        self._drop_orphans()
        (run_id,) = self._reserve(1, "next_run")
        self._state().upsert(ids=[f"r:{run_id}"], embeddings=[PLACEHOLDER], metadatas=[{
            "kind": "run", "run": run_id, "started_at": time.time(), "status": "running",
            "roots": json.dumps(list(roots))}])
        return run_id

    @translated
    def finish_run(self, run_id: int, status: str, stats: Mapping) -> None:
        self._state().update(ids=[f"r:{run_id}"], metadatas=[{
            "finished_at": time.time(), "status": status, "stats": json.dumps(dict(stats))}])

    def _drop_orphans(self) -> None:
        """Records a killed run left in further spaces without their main record."""
        further = [s for s in self._spaces() if s != MAIN]
        if not further:
            return
        main = {i for page in self._pages(self._col(MAIN), include=()) for i in page["ids"]}
        for space in further:
            col = self._col(space)
            orphans = [i for page in self._pages(col, include=()) for i in page["ids"] if i not in main]
            for chunk in chunks(orphans):
                col.delete(ids=list(chunk))
            if orphans:
                log.info("removed %d vectors an interrupted run left in space %s", len(orphans), space)

    # -- what search reads ------------------------------------------------------------------------------------
    @translated
    def vectors(self, space: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 matrix) of every vector in `space` (read from ChromaDB each time)."""
        ids, mats = [], []
        for page in self._pages(self._col(space), include=("embeddings",)):
            ids += page["ids"]
            mats.append(np.asarray(page["embeddings"], dtype=np.float32))
        if not ids:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        return np.asarray([int(i) for i in ids], np.int64), np.concatenate(mats)

    def vector_of(self, image_id: int, space: str) -> np.ndarray | None:
        return self.vectors_of([image_id], space).get(int(image_id))

    @translated
    def vectors_of(self, image_ids: Sequence[int], space: str) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        col = self._col(space)
        wanted = [str(i) for i in dict.fromkeys(map(int, image_ids)) if 0 < i <= MAX_ID] if col is not None else []
        for chunk in chunks(wanted):
            got = col.get(ids=list(chunk), include=["embeddings"])
            if got["ids"]:
                out.update(zip(map(int, got["ids"]), np.asarray(got["embeddings"], np.float32)))
        return out

    @translated
    def spaces(self) -> list[str]:
        return [s for s in self._spaces() if self._col(s).count()]

    @translated
    def get_images(self, ids: Sequence[int]) -> dict[int, dict]:
        return {i: row_of(m) for i, m in self._metadata_of(ids).items()}

    @translated
    def find_path(self, path: str) -> int | None:
        return self._ids_of_paths([path]).get(path)

    @translated
    def write_texts(self, rows: Sequence[tuple[int, TextRecord]]) -> None:
        """(image id, words read in it) for images indexed before (ids no longer indexed are skipped)."""
        texts = {int(i): t for i, t in rows}
        with self._changing_texts():
            self._change(list(texts), lambda meta: meta | text_metadata(texts[int(meta["pid"])]))

    @translated
    def get_texts(self, ids: Sequence[int]) -> dict[int, TextRecord]:
        return {i: t for i, meta in self._metadata_of(ids).items() if (t := text_of(meta)) is not None}

    @translated
    def missing_texts(self, roots: Sequence[str]) -> list[FileState]:
        """The indexed images below `roots` whose words were never read, in path order."""
        states = [FileState(int(m["pid"]), from_text(m["path"]), int(m["size"]), int(m["mtime_ns"]), m["content_hash"])
                  for m in self._all_metadatas(self._col(MAIN), under_where(roots)) if HAS_TEXT not in m]
        return sorted(states, key=lambda s: s.path)

    @translated
    def get_fields(self, ids: Sequence[int]) -> dict[int, dict[str, str]]:
        out: dict[int, dict[str, str]] = {int(i): {} for i in ids}
        for i, meta in self._metadata_of(ids).items():
            out[i] = {k: text for k, (text, _, _) in fields_of(meta).items()}
        return out

    @translated
    def get_tags(self, ids: Sequence[int]) -> dict[int, list[dict]]:
        out: dict[int, list[dict]] = {int(i): [] for i in ids}
        for i, meta in self._metadata_of(ids).items():
            out[i] = [{"tag": t, "source": src, "score": score} for t, src, score in tags_of(meta)]
        return out

    def _metadata_of(self, ids: Sequence[int]) -> dict[int, dict]:
        out, main = {}, self._col(MAIN)
        for chunk in chunks([str(int(i)) for i in ids if 0 < int(i) <= MAX_ID]) if main is not None else ():
            got = main.get(ids=list(chunk), include=["metadatas"])
            out.update({int(i): m for i, m in zip(got["ids"], got["metadatas"])})
        return out

    @translated
    def set_fields(self, rows: Iterable[tuple[int, Mapping[str, object]]], source: str = "import") -> int:
        """(image id, {key: value}) pairs -> fields set (None removes a key); returns fields written."""
        values: dict[int, dict] = {}
        for image_id, fields in rows:
            values.setdefault(int(image_id), {}).update(fields)
        self._add_field_keys({k for fields in values.values() for k, v in fields.items() if v is not None})
        self._change(list(values), lambda meta: with_fields(meta, values[int(meta["pid"])], source))
        return sum(v is not None for fields in values.values() for v in fields.values())

    def _add_field_keys(self, keys: set[str]) -> None:
        known = set(self.field_keys())
        if keys - known:
            self._state().upsert(ids=["fieldkeys"], embeddings=[PLACEHOLDER],
                                 metadatas=[{"kind": "fieldkeys", "keys": json.dumps(sorted(known | keys))}])

    @translated
    def field_keys(self) -> list[str]:
        state = self._col(STATE)
        got = state.get(ids=["fieldkeys"], include=["metadatas"]) if state is not None else {"ids": []}
        return json.loads(got["metadatas"][0]["keys"]) if got["ids"] else []

    @translated
    def field_values(self, key: str) -> dict[int, str]:
        out = {}
        doc = {"$regex": f"(?m)^field\\.{regex_literal(key)}:"}
        for page in self._pages(self._col(MAIN), None, ("metadatas",), doc):
            for meta in page["metadatas"]:
                field = fields_of(meta).get(key)
                if field is not None:
                    out[int(meta["pid"])] = field[0]
        return out

    @translated
    def add_tags(self, rows: Iterable[tuple[int, str, str, float | None]]) -> int:
        """(image id, tag, source, score) -> upserted tags (tags are kept lower-case, trimmed)."""
        new: dict[int, dict[str, list]] = {}
        for i, t, src, score in rows:
            if t and t.strip():
                new.setdefault(int(i), {})[t.strip().lower()] = [t.strip().lower(), src, score]

        def change(meta: dict) -> dict:
            tags = {t[0]: t for t in tags_of(meta)} | new[int(meta["pid"])]
            return with_tags(meta, list(tags.values()))

        self._change(list(new), change)
        return sum(len(t) for t in new.values())

    @translated
    def remove_tags(self, image_ids: Sequence[int], tags: Sequence[str]) -> int:
        gone = {t.strip().lower() for t in tags}
        removed = 0

        def change(meta: dict) -> dict | None:
            nonlocal removed
            before = tags_of(meta)
            after = [t for t in before if t[0] not in gone]
            removed += len(before) - len(after)
            return with_tags(meta, after) if len(after) < len(before) else None

        self._change(image_ids, change)
        return removed

    @translated
    def replace_auto_tags(self, tags: Sequence[str], rows: Iterable[tuple[int, str, float]]) -> int:
        """Drop the automatic tags named `tags`, then add (image id, tag, score) rows as source "auto"; a tag the
        image already has from another source is kept as it is."""
        names = {t.strip().lower() for t in tags}
        new: dict[int, dict[str, list]] = {}
        for i, tag, score in rows:
            new.setdefault(int(i), {})[tag.strip().lower()] = [tag.strip().lower(), "auto", score]
        holders = {int(m["pid"]) for page in self._pages(self._col(MAIN), None, ("metadatas",),
                                                          join("$or", [line_is("tag", t) for t in names]))
                   for m in page["metadatas"]} if names else set()
        added = 0

        def change(meta: dict) -> dict | None:
            nonlocal added
            kept = [t for t in tags_of(meta) if not (t[0] in names and t[1] == "auto")]
            have = {t[0] for t in kept}
            extra = [t for name, t in new.get(int(meta["pid"]), {}).items() if name not in have]
            added += len(extra)
            result = kept + extra
            return with_tags(meta, result) if sorted(result) != sorted(tags_of(meta)) else None

        self._change(sorted(holders | set(new)), change)
        return added

    @translated
    def tag_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for page in self._pages(self._col(MAIN), None, ("metadatas",), {"$regex": "(?m)^tag:"}):
            for meta in page["metadatas"]:
                for t, _, _ in tags_of(meta):
                    counts[t] = counts.get(t, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    # -- status -----------------------------------------------------------------------------------------------
    @translated
    def count(self) -> int:
        main = self._col(MAIN)
        return main.count() if main is not None else 0

    def is_empty(self) -> bool:
        return self.count() == 0


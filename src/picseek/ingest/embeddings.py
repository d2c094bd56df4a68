"""Vectors made elsewhere, in and out: `picseek import-embeddings` and `picseek export`.

Formats (`detect_format` tells them apart; `format=` forces one):
  clip-retrieval  a folder with `img_emb/img_emb_N.npy` (or `embeddings/img_emb/...`) and `metadata/metadata_N.parquet`,
                  the rows of each pair aligned (clip-retrieval's `inference` output)
  npy             an N x D `.npy` file and a list of N ids or paths beside it (CSV/TSV/JSON/Parquet with a header, read
                  by sources.read_rows, or plain text, one per line): Unsplash's `features.npy` + `photo_ids.csv`
  parquet         a Parquet file (or a folder of them) with a vector column (a list or fixed-size list of floats, or
                  the raw bytes of float32/float16 vectors) and other columns (what `picseek export` writes)

Each row becomes an image of the library:
  - a path that exists here (absolute, or relative to `base`, default the source's folder) is that file, stat'ed, so
    a later `picseek index` of its folder finds it unchanged (same size and mtime) and embeds nothing. Its content
    hash is computed during the import (one read of the file, in threads; the header gives width, height and format):
    moves are recognised by it, thumbnails are keyed and checked by it, and a hash filled in "later" would need every
    reader of the store to know of a third state. `hash_files=False` leaves it empty (such a file is re-embedded, not
    followed, when it moves; thumbnails are then keyed by path).
  - otherwise a URL (the row's identifier, or its URL column: `url`, `image_url`, ...) in the form the store keeps;
  - otherwise `COLUMN:VALUE` (`photo_id:XMyPniM9LF0`): searchable, its fields shown, its image not loadable.
The other columns become imported fields and tags (ingest/metadata.row_values: the same names and renames as
`import-metadata`). Vectors are L2-normalised; rows whose vector is NaN, infinite or zero are skipped and counted.

Every batch is one transaction (vectors), then its fields; the run is logged like an index run. A rerun skips rows
the library holds already (same identifier, size and mtime) and writes their fields again, so an interrupted import
is finished by running it again.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelMismatchError, UsageError, one_line
from ..extras import PARQUET, require
from ..store.base import INFO_COLUMNS, FileState, ImageRecord, recorded_run
from .images import file_hash
from .metadata import IMPORTED_ID, key_text, row_values
from .paths import is_url, store_path
from .sources import column_names, pick_column, read_rows, read_url_lines

log = logging.getLogger(__name__)

FORMATS = ("clip-retrieval", "npy", "parquet")
EXPORT_FORMATS = ("clip-retrieval", "parquet")
DTYPES = ("float32", "float16")
BATCH_ROWS = 2048
ID_COLUMNS = ("image_path", "path", "filepath", "file_path", "file", "filename", "url", "image_url",
              "photo_image_url", "photo_id", "image_id", "id", "key", "uid")
URL_COLUMNS = ("url", "image_url", "photo_image_url", "img_url", "src")
VECTOR_COLUMNS = ("vector", "embedding", "embeddings", "image_embedding", "img_emb", "emb", "features", "clip")
_PARQUET_MAGIC = b"PAR1"


@dataclass
class EmbeddingImportReport:
    source: str
    format: str
    model: str
    files: list[str] = field(default_factory=list)
    column: str | None = None  # the identifier column
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0  # already in the library (a rerun)
    local: int = 0  # rows that name a file here
    urls: int = 0
    ids: int = 0  # rows kept as COLUMN:VALUE
    no_key: int = 0  # rows with an empty identifier
    bad_vectors: int = 0  # NaN, infinite or zero vectors, skipped
    bad_examples: list[str] = field(default_factory=list)
    fields_written: int = 0
    tags_written: int = 0
    seconds: float = 0.0

    @property
    def written(self) -> int:
        return self.added + self.updated

    def as_dict(self) -> dict:
        return {**asdict(self), "written": self.written,
                "vectors_per_s": round(self.rows / self.seconds, 1) if self.seconds else None}


@dataclass
class ExportReport:
    out: str
    format: str
    dtype: str
    model: str | None
    rows: int = 0
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "vectors_per_s": round(self.rows / self.seconds, 1) if self.seconds else None}


@dataclass
class ImportProgress:
    rows: int
    total: int | None


# ------------------------------------------------------------------------------------------------ sources


@dataclass
class Source:
    """An opened source: its format, files, vector width, row count (None: unknown), and its chunks
    (`chunks(batch)` -> (N x D vectors, N metadata rows) in file order)."""

    format: str
    files: list[str]
    dim: int
    total: int | None
    chunks: Callable[[int], Iterator[tuple[np.ndarray, list[dict]]]]
    drop: tuple[str, ...] = ()  # columns that are not fields (picseek's own export: the old id and the model)


def detect_format(source: Path) -> str:
    if source.is_dir():
        if _emb_folder(source) is not None:
            return "clip-retrieval"
        if any(source.glob("*.parquet")):
            return "parquet"
        raise UsageError(f"{source}: no img_emb/img_emb_N.npy (clip-retrieval) and no Parquet files in this folder")
    if source.suffix.lower() == ".npy":
        return "npy"
    try:
        with open(source, "rb") as f:
            head = f.read(6)
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {one_line(exc)}") from None
    if head[:4] == _PARQUET_MAGIC:
        return "parquet"
    if head == b"\x93NUMPY":
        return "npy"
    raise UsageError(f"{source}: cannot tell its format: give --format ({', '.join(FORMATS)})")


def open_source(source: str | os.PathLike, fmt: str | None = None, *, ids: str | os.PathLike | None = None,
                vector_column: str | None = None, dim: int | None = None) -> Source:
    """The source in `fmt` (None: detected). `ids`: the id list of an .npy (default: found beside it). `dim`: the
    model's width, which tells float32 from float16 in a column of raw bytes."""
    path = Path(source).expanduser()
    if not path.exists():
        raise UsageError(f"not found: {source}")
    fmt = fmt or detect_format(path)
    if fmt in ("clip-retrieval", "parquet"):
        require(f"reading {fmt} vectors", PARQUET)
    if fmt == "clip-retrieval":
        return _clip_retrieval(path)
    if fmt == "npy":
        return _npy(path, ids)
    if fmt == "parquet":
        return _parquet(path, vector_column, dim)
    raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def _emb_folder(folder: Path) -> Path | None:
    return next((p for p in (folder / "img_emb", folder / "embeddings" / "img_emb") if p.is_dir()), None)


def _number(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else -1


def _load_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable .npy file: {one_line(exc)}") from None
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise UsageError(f"{path}: expected a 2-D array of floats (one vector per row), found {arr.dtype} "
                         f"{'x'.join(map(str, arr.shape))}")
    return arr


def _clip_retrieval(folder: Path) -> Source:
    import pyarrow.parquet as pq

    emb = _emb_folder(folder)
    if emb is None:
        raise UsageError(f"{folder}: no img_emb folder (clip-retrieval writes img_emb/img_emb_N.npy)")
    meta = next((p for p in (folder / "metadata", emb.parent / "metadata", emb.parent.parent / "metadata")
                 if p.is_dir()), None)
    npys = sorted(emb.glob("img_emb_*.npy"), key=_number)
    if not npys:
        raise UsageError(f"{emb}: no img_emb_N.npy files")
    if meta is None:
        raise UsageError(f"{folder}: no metadata folder beside {emb.name} (metadata/metadata_N.parquet)")
    pairs = []
    for npy in npys:
        parquet = meta / f"metadata_{_number(npy)}.parquet"
        if not parquet.is_file():
            raise UsageError(f"{npy}: its metadata {parquet} is missing")
        arr = _load_npy(npy)
        rows = _parquet_rows(parquet)
        if rows != arr.shape[0]:
            raise UsageError(f"{npy} holds {arr.shape[0]} vectors but {parquet} {rows} rows: they must be aligned")
        pairs.append((arr, parquet))
    dims = {a.shape[1] for a, _ in pairs}
    if len(dims) > 1:
        raise UsageError(f"{emb}: the .npy files hold vectors of different widths ({sorted(dims)})")

    def chunks(batch: int):
        for arr, parquet in pairs:
            start = 0
            for part in pq.ParquetFile(parquet).iter_batches(batch_size=batch):
                n = part.num_rows
                yield arr[start:start + n], part.to_pylist()
                start += n

    files = [str(p) for a, m in zip(npys, pairs) for p in (a, m[1])]
    return Source("clip-retrieval", files, dims.pop(), sum(a.shape[0] for a, _ in pairs), chunks)


def _parquet_rows(path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise UsageError(f"{path}: not a readable Parquet file: {one_line(exc)}") from None


def _id_list(npy: Path, ids: str | os.PathLike | None) -> Path:
    if ids is not None:
        return Path(ids).expanduser()
    stem = npy.stem
    names = [f"{stem}{ext}" for ext in (".csv", ".tsv", ".txt", ".parquet", ".json", ".jsonl")]
    names += [f"{stem}_ids{ext}" for ext in (".csv", ".txt", ".parquet")]
    names += ["photo_ids.csv", "ids.csv", "ids.txt", "paths.txt"]
    found = next((npy.parent / n for n in names if (npy.parent / n).is_file()), None)
    if found is None:
        raise UsageError(f"{npy}: no id list beside it ({', '.join(names[:3])}, photo_ids.csv, ...): give --ids FILE")
    return found


def _npy(path: Path, ids: str | os.PathLike | None) -> Source:
    arr = _load_npy(path)
    listing = _id_list(path, ids)
    if listing.suffix.lower() == ".txt":  # one id or path per line
        rows = [{"id": r["url"]} for r in read_url_lines(listing)]
    else:
        rows = list(read_rows(listing))
    if len(rows) != arr.shape[0]:
        raise UsageError(f"{path} holds {arr.shape[0]} vectors but {listing} {len(rows)} rows: they must be aligned")

    def chunks(batch: int):
        for start in range(0, len(rows), batch):
            yield arr[start:start + batch], rows[start:start + batch]

    return Source("npy", [str(path), str(listing)], arr.shape[1], arr.shape[0], chunks)


def _parquet(path: Path, asked: str | None, dim: int | None) -> Source:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise UsageError(f"{path}: no Parquet files")
    try:
        schema = pq.read_schema(files[0])
    except (pa.ArrowException, OSError) as exc:
        raise UsageError(f"{files[0]}: not a readable Parquet file: {one_line(exc)}") from None
    names = {f.name: f.type for f in schema}
    column = _vector_column(names, asked, files[0])
    kind = names[column]
    width = kind.list_size if pa.types.is_fixed_size_list(kind) else None
    if width is None:  # read the first vector to learn its width
        first = pq.ParquetFile(files[0]).read_row_group(0, columns=[column]).column(0) if \
            pq.ParquetFile(files[0]).num_row_groups else None
        if first is None or len(first) == 0:
            raise UsageError(f"{files[0]}: no rows")
        width = len(_vectors(first.slice(0, 1), kind, dim, files[0])[0])
    drop = ("model", "id") if {"model", "path"} <= set(names) else ()

    def chunks(batch: int):
        for f in files:
            pf = pq.ParquetFile(f)
            for part in pf.iter_batches(batch_size=batch):
                vecs = _vectors(part.column(column), kind, dim, f)
                yield vecs, part.drop_columns([column]).to_pylist()

    total = sum(_parquet_rows(f) for f in files)
    return Source("parquet", [str(f) for f in files], width, total, chunks, drop)


def _vector_column(names: Mapping, asked: str | None, path: Path) -> str:
    import pyarrow as pa

    def is_vector(t) -> bool:
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            return pa.types.is_floating(t.value_type)
        return pa.types.is_binary(t) or pa.types.is_large_binary(t)

    if asked is not None:
        column = asked if asked in names else None
        if column is None:
            raise UsageError(f"{path}: no column {asked!r}; its columns: {', '.join(names)}")
    else:
        lower = {n.lower(): n for n in names}
        column = next((lower[c] for c in VECTOR_COLUMNS if c in lower and is_vector(names[lower[c]])), None)
        column = column or next((n for n, t in names.items() if is_vector(t)), None)
    if column is None or not is_vector(names[column]):
        raise UsageError(f"{path}: no vector column (a list of floats, or bytes) among {', '.join(names)}: "
                         "name it with --vector-column")
    return column


def _vectors(col, kind, dim: int | None, path: Path) -> np.ndarray:
    """A vector column (Arrow) -> N x D numpy; nulls refused."""
    import pyarrow as pa

    if col.null_count:
        raise UsageError(f"{path}: {col.null_count} rows have no vector")
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        raw = col.to_pylist()
        size = len(raw[0]) if raw else 0
        if any(len(b) != size for b in raw):
            raise UsageError(f"{path}: the vectors' byte lengths differ")
        if dim is not None and size not in (2 * dim, 4 * dim):
            raise ModelMismatchError(f"{path}: the vectors are {size} bytes, neither float32 nor float16 vectors of "
                                     f"{dim} dimensions (the model's): name the model that made them with --model")
        dtype = "<f2" if dim is not None and size == 2 * dim else "<f4"
        return np.frombuffer(b"".join(raw), dtype=dtype).reshape(len(raw), -1)
    col = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    values = col.flatten().to_numpy(zero_copy_only=False)
    if len(col) and len(values) % len(col):
        raise UsageError(f"{path}: the vectors' lengths differ")
    return values.reshape(len(col), -1) if len(col) else values.reshape(0, 0)


# ------------------------------------------------------------------------------------------------ import


def import_embeddings(store, source: str | os.PathLike, model: Mapping, *, fmt: str | None = None,
                      ids: str | os.PathLike | None = None, column: str | None = None,
                      vector_column: str | None = None, base: str | os.PathLike | None = None,
                      hash_files: bool = True, batch_rows: int = BATCH_ROWS,
                      progress: Callable[[ImportProgress], None] | None = None) -> EmbeddingImportReport:
    """Write the vectors of `source` into `store` as images of `model` (a model record: name, model_id, dim,
    spaces). The width must be the model's; a store that holds another model's vectors is refused."""
    t0 = time.perf_counter()
    spaces = dict(model.get("spaces") or {"main": model["dim"]})
    if len(spaces) != 1:
        raise UsageError(f"{model['name']} makes vectors in {len(spaces)} spaces ({', '.join(spaces)}); imported "
                         "vectors fill one: use a CLIP-family model")
    src = open_source(source, fmt, ids=ids, vector_column=vector_column, dim=int(model["dim"]))
    if src.dim != int(model["dim"]):
        raise ModelMismatchError(f"the vectors in {source} have {src.dim} dimensions but {model['name']} makes "
                                 f"{model['dim']}: name the model that made them with --model")
    rec = store.get_model()
    if rec and rec["model_id"] != model["model_id"]:
        raise ModelMismatchError(f"the library holds vectors of {rec['name']} ({rec['model_id']}), not "
                                 f"{model['name']}: import into another --library")
    if not rec:
        store.set_model(dict(model))
    path = Path(source).expanduser().resolve()
    report = EmbeddingImportReport(str(path), src.format, str(model["name"]), src.files)
    importer = _Importer(store, report, next(iter(spaces)), Path(base).expanduser().resolve() if base else
                         (path if path.is_dir() else path.parent), hash_files, column, src.drop)

    def summary() -> dict:
        report.seconds = time.perf_counter() - t0
        return {**report.as_dict(), "embedded": report.written, "import": True}

    notify = progress or (lambda p: None)
    with recorded_run(store, [str(path)], summary), ThreadPoolExecutor(8) as pool:
        importer.pool = pool
        for vecs, rows in src.chunks(batch_rows):
            importer.batch(np.asarray(vecs, dtype=np.float32), rows)
            notify(ImportProgress(report.rows, src.total))
    if report.bad_vectors:
        log.warning("skipped %d rows whose vector is NaN, infinite or zero (first: %s)", report.bad_vectors,
                    ", ".join(report.bad_examples))
    return report


class _Importer:
    def __init__(self, store, report: EmbeddingImportReport, space: str, base: Path, hash_files: bool,
                 column: str | None, drop: tuple[str, ...]):
        self.store, self.report, self.space, self.base = store, report, space, base
        self.hash_files, self.asked, self.drop = hash_files, column, drop
        self.states: dict[str, FileState] = store.file_states([])
        self.column: str | None = None
        self.url_column: str | None = None
        self.pool: ThreadPoolExecutor | None = None

    def columns(self, rows: list[dict]) -> None:
        self.column = pick_column(rows, self.asked, ID_COLUMNS, source=self.report.source,
                                  unknown="{source}: no column {asked!r}; its columns: {columns}",
                                  not_found="{source}: no column names the images (looked for {candidates}; "
                                            "columns: {columns}): name one with --column")
        names = column_names(rows)
        self.url_column = next((names[c] for c in URL_COLUMNS if c in names and names[c] != self.column), None)
        self.report.column = self.column

    def batch(self, vecs: np.ndarray, rows: list[dict]) -> None:
        if self.column is None and rows:
            self.columns(rows)
        norms = np.linalg.norm(vecs, axis=1) if len(vecs) else np.zeros(0, np.float32)
        ok = np.isfinite(norms) & (norms > 0)
        vecs = vecs / np.where(ok, norms, 1)[:, None]
        located = []
        for i, row in enumerate(rows):
            self.report.rows += 1
            if not ok[i]:
                self.report.bad_vectors += 1
                if len(self.report.bad_examples) < 5:
                    self.report.bad_examples.append(f"row {self.report.rows}")
                continue
            where = self.locate(row)
            if where is None:
                self.report.no_key += 1
                continue
            (ident, place), kind = where
            located.append((ident, place, kind, vecs[i], row))
        local = [ident for ident, place, _, _, _ in located if place == "local"]
        facts = dict(zip(local, self.pool.map(self.stat, local))) if local else {}
        files = [facts.get(ident) or (0, 0, "", dict.fromkeys(INFO_COLUMNS)) for ident, _, _, _, _ in located]
        records, fields = [], []
        for (ident, place, kind, vec, row), facts in zip(located, files):
            size, mtime_ns, content_hash, info = facts
            self.report.local += place == "local"
            self.report.urls += place == "url"
            self.report.ids += place == "id"
            st = self.states.get(ident)
            if st is not None and (st.size, st.mtime_ns) == (size, mtime_ns):
                self.report.unchanged += 1
            else:
                self.report.added += st is None
                self.report.updated += st is not None
                records.append(ImageRecord(ident, size, mtime_ns, content_hash, info, {self.space: vec}))
                self.states[ident] = FileState(-1, ident, size, mtime_ns, content_hash)
            fields.append((ident, row, kind))
        if records:
            self.store.write_images(records, [])
        self.write_fields(fields)

    def locate(self, row: Mapping) -> tuple[tuple[str, str], str] | None:
        """((identifier, "local"/"url"/"id"), key kind for row_values), or None for an empty identifier."""
        value = key_text(row.get(self.column))
        url = key_text(row.get(self.url_column)) if self.url_column else None
        if value is None:
            if url is None:
                return None
            value = url
        if is_url(value):
            ident = store_path(value)  # file:// -> a local path
            if "://" in ident:
                return (ident, "url"), "url"
            return ((ident, "local"), "path") if os.path.isfile(ident) else ((value, "url"), "url")
        local = os.path.expanduser(value)
        local = local if os.path.isabs(local) else os.path.join(self.base, local)
        if os.path.isfile(local):
            return (os.path.normpath(local), "local"), "path"
        if IMPORTED_ID.match(value):  # an earlier import's identifier (an export of such a library): kept
            return (value, "id"), "path"
        if url is not None:
            return (store_path(url), "url"), "id"
        return (f"{self.column}:{value}", "id"), "path"  # the value is in the identifier: no field of its own

    def stat(self, ident: str) -> tuple[int, int, str, dict]:
        """A local file's size, mtime, content hash and header facts (width, height, format)."""
        info = dict.fromkeys(INFO_COLUMNS)
        try:
            st = os.stat(ident)
        except OSError:  # gone since it was found: kept with an unknown size (a later index embeds it)
            return 0, 0, "", info
        known = self.states.get(ident)
        if known is not None and (known.size, known.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return st.st_size, st.st_mtime_ns, known.content_hash, info  # in the library already: nothing read
        content_hash = ""
        try:
            from PIL import Image

            if self.hash_files:
                content_hash = file_hash(ident)
            with Image.open(ident) as img:  # the header only: size and format
                info.update(width=img.width, height=img.height, format=img.format)
        except Exception as exc:  # noqa: BLE001 - the vector is still good; the facts are best effort
            log.debug("%s: %s", ident, one_line(exc))
        return st.st_size, st.st_mtime_ns, content_hash, info

    def write_fields(self, items: list[tuple[str, Mapping, str]]) -> None:
        values, tags = [], []
        for ident, row, kind in items:
            row = {k: v for k, v in row.items() if k not in self.drop}
            f, t = row_values(row, self.column, kind)
            if not f and not t:
                continue
            image_id = self.states[ident].id
            if image_id < 0:
                image_id = self.store.find_path(ident)
                if image_id is None:
                    continue
                st = self.states[ident]
                self.states[ident] = FileState(image_id, ident, st.size, st.mtime_ns, st.content_hash)
            if f:
                values.append((image_id, f))
            tags += [(image_id, tag, "import", None) for tag in t]
        if values:
            self.report.fields_written += self.store.set_fields(values, source="import")
        if tags:
            self.report.tags_written += self.store.add_tags(tags)


# ------------------------------------------------------------------------------------------------ export

EXPORT_CHUNK = 16384


def export_embeddings(store, out: str | os.PathLike, fmt: str = "parquet", dtype: str = "float32",
                      space: str = "main", rows_per_file: int = 1_000_000) -> ExportReport:
    """Write the library's vectors (of `space`) with each image's path and fields: `clip-retrieval` (a folder:
    img_emb/img_emb_N.npy + metadata/metadata_N.parquet, `rows_per_file` rows each) or `parquet` (one file: path,
    id, model, vector, fields). Written beside `out` and renamed into place whole."""
    t0 = time.perf_counter()
    require("exporting vectors", PARQUET)
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    out = Path(out).expanduser().resolve()
    if out.exists() and (fmt == "parquet" or not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists: export into a new {'folder' if fmt == 'clip-retrieval' else 'file'}")
    rec = store.get_model() or {}
    ids, mat = store.vectors(space)
    if not len(ids):
        raise UsageError(f"the library has no vectors in space {space!r} to export")
    keys = store.field_keys()
    report = ExportReport(str(out), fmt, dtype, rec.get("name"), rows=len(ids))
    vec_type = pa.float16() if dtype == "float16" else pa.float32()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        writer = None
        for start in range(0, len(ids), EXPORT_CHUNK):
            part = [int(i) for i in ids[start:start + EXPORT_CHUNK]]
            images, fields = store.get_images(part), store.get_fields(part)
            cols = {"path": [images[i]["path"] if i in images else None for i in part]}
            meta = {k: [fields.get(i, {}).get(k) for i in part] for k in keys}
            vecs = np.asarray(mat[start:start + len(part)], dtype=dtype)
            if fmt == "parquet":
                flat = pa.array(vecs.reshape(-1), type=vec_type)
                table = pa.table({"path": cols["path"], "id": pa.array(part, pa.int64()),
                                  "model": [rec.get("name")] * len(part),
                                  "vector": pa.FixedSizeListArray.from_arrays(flat, vecs.shape[1]),
                                  **{k: pa.array(v, pa.string()) for k, v in meta.items() if k not in _OWN}})
                if writer is None:
                    writer = pq.ParquetWriter(tmp / "part.parquet", table.schema)
                writer.write_table(table)
            else:
                writer = _clip_retrieval_write(tmp, writer, start, len(ids), rows_per_file, vecs,
                                               {**meta, "image_path": cols["path"]})
        if writer is not None and fmt == "parquet":
            writer.close()
        if fmt == "parquet":
            out.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / "part.parquet", out)
            shutil.rmtree(tmp, ignore_errors=True)
            report.files = [str(out)]
        else:
            if writer is not None:
                writer.close()
            if out.is_dir():
                out.rmdir()
            os.replace(tmp, out)
            report.files = sorted(str(p) for p in out.rglob("*.*"))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.seconds = time.perf_counter() - t0
    return report


_OWN = ("path", "id", "model", "vector")


class _ClipWriter:
    """The open pair of a clip-retrieval export: an .npy written in place and its metadata Parquet."""

    def __init__(self, folder: Path, n: int, rows: int, dim: int, dtype):
        (folder / "img_emb").mkdir(exist_ok=True)
        (folder / "metadata").mkdir(exist_ok=True)
        self.npy = np.lib.format.open_memmap(folder / "img_emb" / f"img_emb_{n}.npy", mode="w+", dtype=dtype,
                                             shape=(rows, dim))
        self.meta_path = folder / "metadata" / f"metadata_{n}.parquet"
        self.parquet = None
        self.at = 0

    def write(self, vecs: np.ndarray, meta: dict[str, list]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.npy[self.at:self.at + len(vecs)] = vecs
        self.at += len(vecs)
        table = pa.table({k: pa.array(v, pa.string()) for k, v in meta.items()})
        if self.parquet is None:
            self.parquet = pq.ParquetWriter(self.meta_path, table.schema)
        self.parquet.write_table(table)

    def close(self) -> None:
        self.npy.flush()
        del self.npy
        if self.parquet is not None:
            self.parquet.close()


def _clip_retrieval_write(folder: Path, writer: _ClipWriter | None, start: int, total: int, per_file: int,
                          vecs: np.ndarray, meta: dict[str, list]) -> _ClipWriter:
    """Write rows start.. of the export, opening file pair N = row // per_file as rows cross into it."""
    done = 0
    while done < len(vecs):
        row = start + done
        n, offset = divmod(row, per_file)
        if writer is None or offset == 0:
            if writer is not None:
                writer.close()
            writer = _ClipWriter(folder, n, min(per_file, total - n * per_file), vecs.shape[1], vecs.dtype)
        take = min(len(vecs) - done, per_file - offset)
        writer.write(vecs[done:done + take], {k: v[done:done + take] for k, v in meta.items()})
        done += take
    return writer


__all__ = ["FORMATS", "EXPORT_FORMATS", "EmbeddingImportReport", "ExportReport", "import_embeddings",
           "export_embeddings", "open_source", "detect_format"]

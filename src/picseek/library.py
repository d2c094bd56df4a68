"""The Python API: a Library is one folder that holds an index of images made by one model.

    lib = Library("~/picseek-library")          # or Library() for the default location
    report = lib.index(["~/Pictures"])
    hits = lib.search("a dog running on the beach", limit=10)   # Hits: a list of Hit (hits.py)
"""
from __future__ import annotations

import functools
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from . import config
from ._fs import FileLock, write_atomic
from .errors import IndexBusyError, LibraryError, ModelMismatchError, NoMatchError, UsageError, library_io_error
from .hits import Hit, Hits
from .ingest import remote
from .ingest.paths import DOWNLOADS
from .ingest.pipeline import GPU_BATCH_SIZE, IndexReport, Progress, run_index
from .models import registry
from .query import engine
from .query import tags as tagging
from .query.parse import parse
from .query.rank import date_key
from .query.search import SearchOptions
from .request import ID, IMAGE, Query, SearchRequest, Term
from .store.base import TextRecord, clean_tags
from .store.filters import parse_filters
from .store.select import open_store
from .store.words import line_matches, text_words

PREPARE_EVERY = 100_000  # images written between two steps of the approximate index during an index run

if TYPE_CHECKING:  # pragma: no cover
    from .ingest.download import DownloadOptions, UrlIndexReport
    from .ingest.embeddings import EmbeddingImportReport, ExportReport, ImportProgress
    from .ingest.metadata import ImportReport
    from .ingest.watch import WatchEvent
    from .learn.classify import ClassifyReport, Prediction
    from .query.mine import MineReport
    from .scale.merge import MergeProgress, MergeReport

log = logging.getLogger(__name__)
LABEL_SETS = "labelsets.json"
__all__ = ["Library", "Hit", "Hits", "IndexReport", "Progress", "SearchRequest"]


@contextmanager
def _disk_errors(folder: Path, db: Path | None) -> Iterator[None]:
    """OS errors on the library's own files (or the folders above it) and SQLite errors of its database (`db`)
    leave as one LibraryIOError (errors.library_io_error); errors about other files (photos, the model cache) and
    of other kinds pass unchanged."""
    try:
        yield
    except OSError as exc:
        name = os.path.abspath(os.fsdecode(exc.filename)) if isinstance(exc.filename, (str, bytes)) else ""
        mine = name and (os.path.commonpath([name, folder]) in (name, str(folder)))  # in the library or above it
        if not mine or not (err := library_io_error(exc, folder)):
            raise
        raise err from exc
    except sqlite3.Error as exc:
        if db is None or not (err := library_io_error(exc, folder, db.name, "reading")):
            raise
        raise err from exc


def _on_disk(method: Callable) -> Callable:
    """A Library method whose disk errors leave as one LibraryIOError (_disk_errors)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._disk_errors():
            return method(self, *args, **kwargs)
    return run


class Library:
    """An image library on disk. `model` is only needed for a new library: an existing one knows its model."""

    def __init__(self, path: str | os.PathLike | None = None, model=None, create: bool = True,
                 store: str | None = None, precision: str | None = None, device: str | None = None,
                 image_model: str | None = None, runtime: str | None = None):
        """`model`: a name (see `picseek models`), or any object that implements the Embedder protocol.
        `store`: where vectors and metadata live (default: the `store` setting, else the built-in store in the
        library folder): "chroma://HOST:PORT/COLLECTION" or "chroma:///PATH?collection=NAME" (ChromaDB; the
        folder then holds only the index lock and thumbnails; docs/deployment.md).
        `precision`: what runs a CLIP-family model (auto, fp32, bf16, int8, fp16; default: the `precision` setting).
        `device`: where the model embeds images while indexing (cpu, cuda, cuda:N; default: the `device` setting).
        `runtime`: what runs a ready-ONNX model's int8 image tower on the CPU (auto, onnxruntime, openvino; default:
        the `runtime` setting).
        `image_model`: an image-only model (`dinov2-small`, `dinov2-base`, hf:ORG/NAME) whose space answers
        example-image queries (search by photo, `similar`, `duplicates`); recorded at the next `index`, which fills
        it in for images indexed before. A library that has one keeps it (another one asked for is refused)."""
        self.path = config.library_path(path)
        with _disk_errors(self.path, None):
            self.store = open_store(config.get("store", store), self.path, create=create)
        self._model_arg = model
        self._precision_arg = precision
        self._device_arg = device
        self._runtime_arg = runtime
        self._image_model_arg = image_model
        self._embedder = None

    # -- model ----------------------------------------------------------------------------------------------------
    @property
    def recorded_model(self) -> dict | None:
        return self.store.get_model()

    def _check_same(self, embedder) -> None:
        rec = self.recorded_model
        if rec and registry.verifies(rec, embedder.name, embedder.dim):  # imported vectors: now the weights are seen
            self.store.set_model({**rec, "model_id": embedder.model_id, "spaces": dict(embedder.spaces)})
            return
        if rec and rec["model_id"] != embedder.model_id:
            raise ModelMismatchError(
                f"library {self.path} was indexed with {rec['name']} ({rec['model_id']}), not "
                f"{embedder.model_id}: search it with --model {rec['name']}, or re-index with the new model "
                f"({self.command(f'index --model {embedder.name} --rebuild FOLDER')}) or into another --library")

    def embedder(self):
        """The model this library uses: the recorded one, or for a new library the one asked for (default auto)."""
        if self._embedder is not None:
            return self._embedder
        rec = self.recorded_model
        asked = self._model_arg
        if asked is not None and not isinstance(asked, str):  # an Embedder object from the caller
            self._check_same(asked)
            emb = asked
        else:
            emb = registry.load_embedder(self.model_name(asked), device=self._device(),
                                         precision=self._precision(),
                                         runtime=self._runtime())
            if rec:
                self._check_same(emb)
        if (image_model := self.image_model_name()) is not None:
            emb = self._with_image_model(emb, image_model)
        self._embedder = emb
        return emb

    def image_model_name(self) -> str | None:
        """The image-only model of this library (models/spaces.py): the recorded one, else the one asked for, else
        None. One asked for that is not the recorded one: a ModelMismatchError."""
        recorded = ((self.recorded_model or {}).get("image_model") or {}).get("name")
        asked = self._image_model_arg
        if asked and recorded and registry.resolve_image_model(asked).name != recorded:
            raise ModelMismatchError(
                f"library {self.path} has the image space of {recorded}, not {asked}: leave out --image-model to "
                f"keep {recorded}, re-index with --rebuild, or use another --library")
        return recorded or (registry.resolve_image_model(asked).name if asked else None)

    def _with_image_model(self, emb, name: str):
        """The library's model with the image model's space (models/spaces.py). A recorded image model loads on the
        first image embedded (a text query never loads it) and must still be the recorded weights."""
        from .models.spaces import WithImageSpace

        rec = self.recorded_model or {}
        recorded = rec.get("image_model")

        def load():
            image_model = registry.load_image_model(name, precision=self._precision())
            if recorded and recorded.get("model_id") != image_model.model_id:
                raise ModelMismatchError(
                    f"library {self.path} has the image space of {recorded['name']} ({recorded.get('model_id')}), "
                    f"not {image_model.model_id}: its weights changed; index into another --library")
            return image_model

        if recorded:
            return WithImageSpace(emb, None, recorded["space"], complete=recorded["space"] in rec.get("spaces", {}),
                                  load=load, dim=int(recorded["dim"]))
        image_model = load()
        return WithImageSpace(emb, image_model, image_model_space(image_model), complete=not rec)

    def model_name(self, asked: str | None = None) -> str:
        """The name of the model to build for this library (here, and on Spark's workers): the recorded one
        (registry.name_for_record: a library made when a short name meant the torch conversion keeps that), where
        `asked` names another model a ModelMismatchError; for a new library `asked`, else the `model` setting."""
        rec = self.recorded_model
        if not rec:
            return config.get("model", asked)
        recorded = registry.name_for_record(rec["name"], rec.get("model_id"))
        if asked not in (None, registry.AUTO, rec["name"]):
            spec = registry.resolve(asked)
            if spec.name != recorded:
                raise ModelMismatchError(
                    f"library {self.path} was indexed with {recorded}, not {spec.name}: leave out --model "
                    f"to use {recorded}, re-index with --rebuild, or use another --library")
        return recorded

    def _precision(self) -> str:
        from .models.onnx import check_precision

        return check_precision(config.get("precision", self._precision_arg))

    def _runtime(self) -> str:
        from .models.openvino_tower import check_runtime

        return check_runtime(config.get("runtime", self._runtime_arg))

    def _device(self) -> str:
        from .models.onnx import check_device

        return check_device(config.get("device", self._device_arg))

    def _batch_size(self, asked: int | None) -> int:
        """Images per model batch: asked, else the setting, else the device's default (a GPU wants big batches)."""
        from .models.onnx import is_gpu

        if is_gpu(self._device()):
            return config.get("batch_size", asked, fallback=GPU_BATCH_SIZE)
        return config.get("batch_size", asked)

    def _record_model(self, emb, ocr: bool = False) -> None:
        """A new library records its model (with its image model, whose space every image gets from the start, and
        whether it reads text); an existing one records an image model newly asked for, whose space joins `spaces`
        once it is filled in."""
        rec = self.recorded_model
        image = _image_record(emb) if not (rec or {}).get("image_model") else None
        if not rec:
            self.store.set_model({"name": emb.name, "model_id": emb.model_id, "dim": emb.dim,
                                  "spaces": dict(emb.spaces), "ocr": bool(ocr),
                                  **({"image_model": image} if image else {})})
        elif image and not rec.get("image_model"):
            self.store.set_model({**rec, "image_model": image})

    @property
    def ocr(self) -> bool:
        """Whether index runs read the words in images (OCR): a setting of the library, recorded with its model
        by the run that turned it on (`index(..., ocr=True)`, `picseek index --ocr`) or off."""
        return bool((self.recorded_model or {}).get("ocr"))

    def _set_ocr(self, ocr: bool) -> None:
        rec = self.recorded_model
        if rec and bool(rec.get("ocr")) != ocr:
            self.store.set_model(dict(rec, ocr=ocr))

    def _image_space_filled(self) -> None:
        rec = self.recorded_model or {}
        image = rec.get("image_model")
        if image and image["space"] not in rec.get("spaces", {}):
            self.store.set_model({**rec, "spaces": {**rec.get("spaces", {}), image["space"]: image["dim"]}})
        if self._embedder is not None and image:
            self._embedder.image_query_space = image["space"]

    # -- indexing -------------------------------------------------------------------------------------------------
    def index(self, roots: Iterable[str | os.PathLike], *, workers: int | None = None,
              batch_size: int | None = None, retry_errors: bool = False, rebuild: bool = False,
              progress: Callable[[Progress], None] | None = None,
              storage_options: dict | None = None, scope: Iterable[str | os.PathLike] | None = None,
              ocr: bool | None = None) -> IndexReport:
        """Add new and changed images below `roots`, follow moved ones, drop vanished ones. Safe to interrupt:
        the next call continues where this one stopped. Roots may be URLs (s3://bucket/prefix, gs://...,
        https://host/dir/; docs/deployment.md); `storage_options` go to their fsspec backends for this run.
        `scope`: the folders `roots` are subfolders of (a watcher's; ingest/pipeline.run_index). `ocr`: read the
        words in images (True: from now on, for this library: later runs and watchers keep doing it, and images
        indexed before are read without being embedded again; False: no longer; None: as the library says,
        `Library.ocr`). Raises IndexBusyError while another run holds the library."""
        roots = list(roots)
        with self._index_lock(), remote.storage_options(storage_options, [os.fspath(r) for r in roots]):
            return self._index_locked(roots, workers=workers, batch_size=batch_size,
                                      retry_errors=retry_errors, rebuild=rebuild, progress=progress,
                                      scope=None if scope is None else [os.fspath(r) for r in scope], ocr=ocr)

    def _index_locked(self, roots: list, *, workers: int | None, batch_size: int | None, retry_errors: bool,
                      rebuild: bool, progress: Callable[[Progress], None] | None,
                      scope: list[str] | None = None, ocr: bool | None = None) -> IndexReport:
        ocr = self.ocr if ocr is None else bool(ocr)
        if ocr:
            from . import extras

            extras.require("reading text in images (--ocr)", extras.OCR)
        self._set_ocr(ocr)
        if rebuild:
            rec = self.recorded_model
            name = self._model_arg or self.model_name()
            asked_image = self._image_model_arg  # the one asked for, else the recorded one kept through the rebuild
            image_model = registry.resolve_image_model(asked_image).name if asked_image else self.image_model_name()
            self._embedder = name if not isinstance(name, str) else registry.load_embedder(
                name, device=self._device(), precision=self._precision(), runtime=self._runtime())
            self.store.clear_vectors()
            if image_model:
                self._image_model_arg = image_model
                self._embedder = self._with_image_model(self._embedder, image_model)
        self.image_model_name()  # another image model than the recorded one: refused before anything is done
        rec = self.recorded_model
        adding_image_model = bool(self._image_model_arg and rec and not rec.get("image_model"))
        from .models.onnx import is_gpu

        # (a GPU asked for is checked now, even where nothing turns out to need embedding)
        if (self._embedder is None and rec and self._model_arg in (None, registry.AUTO, rec["name"])
                and not adding_image_model and not is_gpu(self._device())):
            emb = _LazyModel(self.embedder)  # a re-scan that finds nothing new never loads the model
        else:
            emb = self.embedder()
            self._record_model(emb, ocr)
        rec = self.recorded_model or {}
        image = rec.get("image_model")
        fill = image["space"] if image else None  # images without its vector (added to the library, interrupted)
        report = run_index(self.store, emb, [os.fspath(r) for r in roots],
                           workers=config.get("workers", workers), batch_size=self._batch_size(batch_size),
                           retry_errors=retry_errors, max_pixels=config.get("max_image_pixels"),
                           progress=self._search_kept_ready(progress), skip=[str(self.path)], scope=scope,
                           ocr=ocr, fill=fill)
        if fill and fill not in rec.get("spaces", {}):
            self._image_space_filled()  # the fill ran to its end: example-image queries use the space now
        if report.embedded and hasattr(emb, "prepare"):
            emb.prepare()  # e.g. export the fast text tower now, so the first search does not wait for it
        if report.embedded or report.removed:  # e.g. a large library's approximate index, in step now
            self.store.prepare_search(list((self.recorded_model or {}).get("spaces", {"main": 0})),
                                      config.get("ann_threshold"))
        return report

    def _search_kept_ready(self, progress: Callable[[Progress], None] | None) -> Callable[[Progress], None]:
        """`progress`, and every PREPARE_EVERY images written the large spaces' approximate indexes brought in step
        (store.prepare_search: trained once a space passes ann_threshold, then rows added as batches land), so a
        long run never leaves a whole build to its end or to the first search, and a killed run leaves the index
        saved at its last step."""
        written = [0]

        def step(p: Progress) -> None:
            if p.phase == "embed" and p.done - written[0] >= PREPARE_EVERY:
                written[0] = p.done
                self.store.prepare_search(list((self.recorded_model or {}).get("spaces", {"main": 0})),
                                          config.get("ann_threshold"))
            if progress is not None:
                progress(p)

        return step

    def watch(self, roots: Iterable[str | os.PathLike], *, debounce: float | None = None,
              rescan: float | None = None, initial: bool = True, workers: int | None = None,
              batch_size: int | None = None, on_event: Callable[[WatchEvent], None] | None = None,
              stop=None, run: Callable | None = None) -> None:
        """Keep the library in step with `roots` (local folders) until `stop` (a threading.Event) is set or Ctrl-C:
        an incremental index run first (unless `initial=False`), then one for each batch of file events (new,
        changed, moved, deleted images; `debounce` seconds of quiet, default: the `watch_debounce` setting) and a
        full one every `rescan` seconds (`watch_rescan`; 0 = never). `on_event(WatchEvent)` hears about every run.
        `run`: what indexes (default: this library's `index`; the server passes its indexer's)."""
        from .ingest.watch import Watcher

        def index(folders, *, workers=None, scope=None):
            return self.index(folders, workers=workers, batch_size=batch_size, scope=scope)

        def warm() -> None:  # the first batch of events should not wait for the model to load
            if self.recorded_model:
                self.embedder()

        Watcher(roots, run or index, skip=[str(self.path)], debounce=config.get("watch_debounce", debounce),
                rescan=config.get("watch_rescan", rescan), initial=initial, workers=workers, on_event=on_event,
                stop=stop, after_initial=None if run else warm).run_forever()

    def handle_event(self, event, headers: dict | None = None, *, roots: Iterable[str] | None = None,
                     storage_options: dict | None = None, wait: float = 0) -> dict:
        """Index or remove the one object a storage event is about (ingest/events.py: Cloud Storage CloudEvents,
        structured or binary with `headers`; S3 notifications, also inside SQS/SNS; EventBridge S3 events). `event`:
        the JSON document (dict, text or bytes). Returns the answer: {"action": indexed, updated, removed,
        unchanged, skipped, ignored or failed, "url", "event", "id", "reason"}; for an event about several objects
        {"action": "batch", "results": [...]}. The object's current state in storage decides, so a repeated or late
        event changes nothing. Raises UsageError (not an event), StorageError (storage cannot be read: deliver it
        again) and IndexBusyError (another run holds the library for more than `wait` seconds: deliver it again).
        `roots`: only objects below these URLs are indexed (others skipped)."""
        from .ingest import events
        from .ingest.images import decode_file

        parsed = events.parse_event(event, headers)
        wanted = [e for e in parsed if e.kind is not None]
        scope = [remote.store_path(r) for r in roots or ()]
        # (a library that reads text reads it in the objects events bring too)
        decode = functools.partial(decode_file, max_pixels=config.get("max_image_pixels"), ocr=self.ocr)

        def model():
            emb = self.embedder()
            self._record_model(emb)
            return emb

        def one(e) -> dict:
            return events.apply(self.store, model, e, info=remote.object_info, decode=decode, roots=scope)

        if not wanted:
            results = [one(e) for e in parsed]
        else:
            with self._index_lock(wait), remote.storage_options(storage_options, [e.url for e in wanted]):
                results = [one(e) for e in parsed]
        return results[0] if len(results) == 1 else {"action": "batch", "results": results}

    def remove(self, paths: Iterable[str | os.PathLike]) -> int:
        """Forget the images at or below `paths` (which may no longer exist). Files on disk are never touched.
        Returns how many images left the library."""
        roots = [remote.store_path(p) for p in paths]
        if not roots:
            raise UsageError("no path given to remove")
        with self._index_lock():
            return self.store.delete_under(roots)

    # -- metadata and URL lists ---------------------------------------------------------------------------------
    def import_metadata(self, path: str | os.PathLike, *, key: str = "auto",
                        column: str | None = None) -> ImportReport:
        """Join the rows of a JSON, JSON Lines, CSV/TSV or Parquet file to indexed images (by path, file name,
        id or URL; `key="auto"` picks the column that matches most) and store their columns as fields."""
        from .ingest.metadata import import_rows
        from .ingest.sources import read_rows

        source = Path(path).expanduser()
        return import_rows(self.store, read_rows(source), source=str(source), key=key, column=column,
                           base=source.resolve().parent)

    def index_urls(self, path: str | os.PathLike, *, url_column: str | None = None, retry_errors: bool = False,
                   rebuild: bool = False, workers: int | None = None, batch_size: int | None = None,
                   progress: Callable[[Progress], None] | None = None,
                   download_options: DownloadOptions | None = None, ocr: bool | None = None) -> UrlIndexReport:
        """Download the images a URL list names into <library>/downloads (checked, resumable), index them, and
        import the list's other columns as metadata joined by URL (each image gets the field `url`).
        `download_options` (concurrency, timeouts, retries, size cap) default to the settings."""
        from .ingest import download
        from .ingest.metadata import import_rows

        rows, column = download.read_url_list(Path(path).expanduser(), url_column)
        opts = download_options or download.DownloadOptions(
            concurrency=config.get("download_concurrency"), timeout=config.get("url_timeout"),
            max_bytes=config.get("url_max_bytes"), max_pixels=config.get("max_image_pixels"))
        folder = (self.path / download.FOLDER).resolve()
        with self._index_lock():
            got, paths = download.download_urls(self.store, (r.get(column) for r in rows), folder, opts,
                                                retry_errors=retry_errors, progress=progress)
            report = self._index_locked([folder], workers=workers, batch_size=batch_size,
                                        retry_errors=retry_errors, rebuild=rebuild, progress=progress, ocr=ocr)
            ids = {p: s.id for p, s in self.store.file_states([str(folder)]).items()}
            urls = {ids[p]: u for u, p in paths.items() if p in ids}
            meta = import_rows(self.store, rows, source=str(path), key="url", column=column, urls=urls)
        return download.UrlIndexReport(got, report, meta)

    def merge(self, shards: Iterable[str | os.PathLike], *,
              progress: Callable[[MergeProgress], None] | None = None) -> MergeReport:
        """Load Parquet shards written by Spark indexing (picseek.scale.spark) into this library, idempotently: a
        row whose path and content the library holds already adds nothing. The shards' model must be the
        library's (a new library takes theirs); error rows are recorded as an index run records them."""
        from .scale.merge import merge_shards

        with self._index_lock():
            return merge_shards(self.store, list(shards), progress=progress)

    @_on_disk
    def import_embeddings(self, source: str | os.PathLike, *, model: str | None = None,
                          format: str | None = None,  # noqa: A002 - the CLI's option name
                          ids: str | os.PathLike | None = None, column: str | None = None,
                          vector_column: str | None = None, base: str | os.PathLike | None = None,
                          hash_files: bool = True,
                          progress: Callable[[ImportProgress], None] | None = None) -> EmbeddingImportReport:
        """Bring in vectors made elsewhere (clip-retrieval's output, an .npy with an id list, Parquet with a vector
        column; docs/embeddings.md) as images of `model`, the model that made them (default: the library's, or the
        one this Library was opened with). Their width must be that model's; a library of another model refuses
        them. Local files are stat'ed (a later index of their folder embeds nothing); other rows are kept under
        their URL or `COLUMN:VALUE`; the other columns become fields. Safe to interrupt and run again."""
        from .ingest.embeddings import import_embeddings

        rec = self.recorded_model
        asked = model if model is not None else self._model_arg
        if asked is not None and not isinstance(asked, str):  # an Embedder object
            self._check_same(asked)
            record = self.recorded_model or {"name": asked.name, "model_id": asked.model_id, "dim": asked.dim,
                                             "spaces": dict(asked.spaces)}
        elif rec:
            self.model_name(asked)  # another model asked for: ModelMismatchError
            record = rec
        elif asked is None or asked == registry.AUTO:
            raise UsageError("name the model that made the vectors: --model NAME (see `picseek models`)")
        else:
            record = registry.record_for(asked)
        with self._index_lock():
            return import_embeddings(self.store, source, record, fmt=format, ids=ids, column=column,
                                     vector_column=vector_column, base=base, hash_files=hash_files,
                                     progress=progress)

    @_on_disk
    def export_embeddings(self, out: str | os.PathLike, *, format: str = "parquet",  # noqa: A002
                          dtype: str = "float32") -> ExportReport:
        """Write the library's vectors with each image's path and fields: `clip-retrieval` (a folder of
        img_emb/img_emb_N.npy + metadata/metadata_N.parquet) or `parquet` (one file: path, id, model, vector, the
        fields); float32 or float16. What `import_embeddings` reads back."""
        from .ingest.embeddings import export_embeddings

        return export_embeddings(self.store, out, format, dtype)

    @_on_disk
    def mine(self, queries: Iterable[str] | str | os.PathLike, *, top: int = 50, where: Iterable[str] = (),
             tags: Iterable[str] = (), rerank: str | None = None, column: str | None = None,
             out: str | os.PathLike | None = None, score_groups=None) -> tuple[dict[str, list], MineReport]:
        """Many text queries at once (docs/embeddings.md): each query's best `top` images by one matrix product over
        the stored vectors, optionally re-scored by an image-text matching model (`rerank`, e.g. "blip-itm-base").
        `queries`: texts, or a file (one per line, or a CSV/Parquet/JSON column: `column`). Returns (columns query,
        rank, image_id, path, score, rerank_score; report); `out` (.parquet, .csv, .jsonl) also writes them.
        `score_groups`: what runs the re-ranker (scale/spark.py passes Spark's)."""
        from .query import mine as mining

        if isinstance(queries, (str, os.PathLike)):
            queries = mining.read_queries(queries, column)
        if out is not None:
            mining.out_format(out)  # a bad extension is refused before any work
        if self.store.is_empty():
            raise LibraryError(f"library {self.path} has no images yet: run {self.command('index FOLDER')} first")
        cols, report = mining.mine(self.store, self.embedder(), list(queries), top, where=where, tags=tags,
                                   rerank=rerank, score_groups=score_groups,
                                   max_pixels=config.get("max_image_pixels"))
        if out is not None:
            mining.write_hits(cols, out)
            report.out = str(Path(out).expanduser().resolve())
        return cols, report

    @contextmanager
    def _index_lock(self, wait: float = 0) -> Iterator[None]:
        """Hold the one-run-at-a-time lock (waiting up to `wait` seconds for it). A run the log still calls
        "running" then belongs to a process that died without recording its end (SIGKILL, power loss): it is
        recorded as interrupted first."""
        busy = IndexBusyError(f"another index run is using {self.path}; wait for it to finish")
        lock = FileLock(self.path / "index.lock")
        with self._disk_errors():
            deadline = time.monotonic() + wait
            while not lock.acquire(wait=False):
                if time.monotonic() >= deadline:
                    raise busy
                time.sleep(0.05)
            try:
                last = self.store.last_run()
                if last and last["status"] == "running":
                    self.store.finish_run(last["id"], "interrupted", last.get("stats") or {})
                yield
            finally:
                lock.release()

    def last_run(self) -> dict | None:
        """The last index or merge run. One the log calls "running" while no process holds the index lock was
        killed: it is reported "interrupted" (the one rule for the CLI and /api/status; the next run records it
        so, a reader never writes)."""
        run = self.store.last_run()
        if run and run["status"] == "running" and not FileLock(self.path / "index.lock").held():
            again = self.store.last_run()  # it may have ended (or a new run begun) between the read and the probe
            if again and again["id"] == run["id"] and again["status"] == "running":
                again = dict(again, status="interrupted")
            run = again
        return run

    def _disk_errors(self):
        return _disk_errors(self.path, self.store.database)

    # -- search ---------------------------------------------------------------------------------------------------
    @_on_disk
    def search(self, query: str | os.PathLike | Image.Image | bytes | Query | SearchRequest,
               /, **options) -> Hits:
        """Best hits first for a query (docs/query.md): words, example images (file, URL, `id:N`, a PIL image or
        image bytes), tags, combined with + and - and weighted with N:; or a whole SearchRequest.

        options: the fields of SearchRequest (limit, threshold, where, sort, keywords, soft_tags, rerank,
        rerank_top, adaptive, exact), e.g. `lib.search("a red car", limit=5, where=["taken>=2021"])`.
        Filters or tags that match no image give no hits, with the reason in `hits.note`."""
        req = query.replace(**options) if isinstance(query, SearchRequest) else SearchRequest(query, **options)
        opts = SearchOptions(max_pixels=config.get("max_image_pixels"), url_max_bytes=config.get("url_max_bytes"),
                             url_timeout=config.get("url_timeout"))
        plan = engine.make_plan(req, opts, config.get("keyword_weight"), config.get("ann_threshold"))
        if self.store.is_empty():
            raise LibraryError(f"library {self.path} has no images yet: run {self.command('index FOLDER')} first")
        spaces = list((self.recorded_model or {}).get("spaces", {"main": 0}))
        parsed = _as_query(req.query)
        try:
            ranked = engine.rank(self.store, self.embedder, spaces, parsed, plan)
        except NoMatchError as exc:  # not an error: an honest "nothing", with the reason
            return Hits(note=str(exc))
        searched = text_words(" ".join([parsed.words] + [w for w, shown in parsed.in_text if shown]))
        hits = self.hits(ranked, searched)
        if req.rerank:
            from .query.rerank import rerank_hits

            hits = Hits(rerank_hits(hits, parsed.words, req.rerank, req.rerank_top, Hit.open,
                                    embedder=self.embedder()))
        hits = hits[:req.limit]
        if req.sort in ("date", "newest"):
            hits.sort(key=lambda h: date_key(h.taken_at, req.sort == "newest"))
        return hits

    @_on_disk
    def browse(self, *, where: Iterable[str] = (), tags: Iterable[str] = (), limit: int = 50,
               after: str | None = None) -> tuple[Hits, str | None]:
        """The library newest first (date taken, else file time), `limit` hits per page, optionally filtered
        (`where`, as for search) and to images with every tag in `tags`. `after`: the cursor the previous page
        returned (None: the first page). Returns (hits, the next page's cursor or None); hits have no score."""
        if limit < 1:
            raise UsageError("limit must be at least 1")
        tags = clean_tags(tags) if tags else []
        selection = self.store.select(parse_filters(where), tags, (), os.getcwd())
        page = self.store.browse(selection, limit, after)
        return self.hits((i, None) for i, _ in page.items), page.next

    def hits(self, ranked: Iterable[tuple], searched: Iterable[str] = ()) -> Hits:
        """(image id, score) or (image id, score, via) tuples (engine.Ranked) -> Hits with the image's facts,
        fields, tags and words read in it (lines holding a word of `searched` marked as matched; ids no longer
        there dropped; scores clipped to [-1, 1]: stored float16 vectors can make a cosine a hair above 1)."""
        ranked = [(r[0], r[1], r[2] if len(r) > 2 else None) for r in ranked]
        ids = [i for i, _, _ in ranked]
        rows, fields, tags = self.store.get_images(ids), self.store.get_fields(ids), self.store.get_tags(ids)
        texts, searched = self.store.get_texts(ids), list(searched)
        downloads = str(self.path.resolve() / DOWNLOADS) + os.sep
        return Hits(Hit(i, r["path"], None if s is None else round(min(max(s, -1.0), 1.0), 6), r["width"],
                        r["height"], r["taken_at"], r["camera_make"], r["camera_model"], fields.get(i, {}),
                        tags.get(i, []), via=via,
                        source=fields.get(i, {}).get("url") if r["path"].startswith(downloads) else None,
                        ocr=ocr_json(texts.get(i), searched))
                    for i, s, via in ranked if (r := rows.get(i)))

    def similar(self, image: int | str, *, limit: int = 20, where: Iterable[str] = (),
                threshold: float | None = None, sort: str | None = None) -> Hits:
        """More like an indexed image (an id or the path of an indexed file); the image itself is left out."""
        image_id = tagging.resolve_image(self.store, image)
        hits = self.search(Query((Term(ID, str(image_id)),)), limit=limit + 1, where=tuple(where),
                           threshold=threshold, sort=sort, keywords=False)
        return Hits((h for h in hits if h.id != image_id), hits.note)[:limit]

    def duplicates(self, threshold: float = 0.95, *,
                   progress: Callable[[int, int], None] | None = None) -> list[Hits]:
        """Groups of near-duplicate images (cosine similarity >= threshold in the model's image-query space),
        biggest groups first; each hit's score is its similarity to the group's first image."""
        from .query.duplicates import duplicate_groups

        if not 0 < threshold <= 1:
            raise UsageError(f"duplicate threshold must be in (0, 1], not {threshold}")
        emb = self.embedder()
        recorded = list((self.recorded_model or {}).get("spaces", {"main": 0}))
        space = emb.image_query_space if emb.image_query_space in recorded else "main"
        ids, mat = self.store.vectors(space)
        return [self.hits(group) for group in duplicate_groups(ids, mat, threshold, progress)]

    # -- tags -----------------------------------------------------------------------------------------------------
    def tag_add(self, image: int | str, tags: Iterable[str]) -> list[str]:
        """Tag an image (an id or the path of an indexed file) by hand; returns all its tags."""
        return tagging.add(self.store, image, list(tags))

    def tag_remove(self, image: int | str, tags: Iterable[str]) -> int:
        """Remove tags (of any source) from an image; returns how many it had."""
        return tagging.remove(self.store, image, list(tags))

    def auto_tag(self, labels: Iterable[str], *, threshold: float | None = None, template: str | None = None,
                 progress: Callable[[int, int], None] | None = None) -> tagging.AutoTagReport:
        """Zero-shot tagging: every image gets the labels whose score (cosine of its vector with the text vector
        of "a photo of LABEL") reaches `threshold` (default: measured per model), with the score kept."""
        emb = self.embedder()
        return tagging.auto_tag(self.store, emb, (self.recorded_model or {}).get("name", emb.name), list(labels),
                                threshold=threshold, template=template or tagging.zeroshot.DEFAULT_TEMPLATE,
                                progress=progress)

    def classify(self, images=None, labels: Iterable[str] | str | None = None, *, top: int = 3,
                 templates: Iterable[str] | None = None, progress: Callable[[int, int], None] | None = None,
                 store_tags: bool = False, min_score: float = 0.3):
        """Zero-shot classification: each image's most probable `labels` (softmax over them, CLIP's recipe).

        `lib.classify(images, labels)`: one Prediction per image, in order. Images are files (paths), PIL images,
        ids of indexed images (classified from their stored vectors, nothing decoded), or a mix; one may be given
        alone. An image that cannot be read gets `error` instead of labels.
        `lib.classify(labels)` (or `classify(labels=...)`): every image of the library, as `classify_all(labels)`
        (report, predictions). `labels`: a list, or one string of comma-separated labels.
        With `store_tags` (ids only): labels whose probability reaches `min_score` become tags with source
        "classify" (as classify_all stores them); returns the predictions."""
        if images is None and labels is None:
            raise UsageError("give the labels to classify between: classify(images, labels) or classify(labels)")
        if images is None or labels is None:
            return self.classify_all(labels if images is None else images, top=top, templates=templates,
                                     progress=progress, store_tags=store_tags, min_score=min_score)
        from .learn import classify as learn_classify

        if isinstance(images, (str, os.PathLike, Image.Image, int)):
            images = [images]
        images = list(images)
        if store_tags and not all(isinstance(x, int) and not isinstance(x, bool) for x in images):
            raise UsageError("store_tags needs indexed images (their ids), or the whole library: "
                             "classify_all(labels, store_tags=True)")
        templates = tuple(templates or learn_classify.DEFAULT_TEMPLATES)
        if store_tags:
            return learn_classify.classify_ids_to_tags(self.embedder(), self.store, images, _labels(labels),
                                                       templates=templates, top=top, min_score=min_score)
        return learn_classify.classify_images(
            self.embedder(), images, _labels(labels), templates=templates,
            top=top, progress=progress, store=self.store, max_pixels=config.get("max_image_pixels"))

    def classify_all(self, labels: Iterable[str] | str, *, store_tags: bool = False, min_score: float = 0.3,
                     top: int = 3, templates: Iterable[str] | None = None,
                     progress: Callable[[int, int], None] | None = None) -> tuple[ClassifyReport, list[Prediction]]:
        """Zero-shot classification of every image (as `picseek classify --all`): (report, predictions).
        With `store_tags`, labels whose probability reaches `min_score` become tags with source "classify"."""
        from .learn import classify as learn_classify

        return learn_classify.classify_library(
            self, _labels(labels), templates=tuple(templates or learn_classify.DEFAULT_TEMPLATES), top=top,
            store_tags=store_tags, min_score=min_score, progress=progress)

    def tag_images(self, ids: Iterable[int], add: Iterable[str] = (), remove: Iterable[str] = ()) -> dict:
        """Add and remove tags (source "user") on many indexed images at once; ids that are not indexed images are
        a UsageError naming them, and nothing changes. Returns {"added": rows written, "removed": rows removed}."""
        ids = list(dict.fromkeys(int(i) for i in ids))
        missing = sorted(set(ids) - set(self.store.get_images(ids)))
        if missing:
            raise UsageError("no indexed image with id " + ", ".join(map(str, missing[:20]))
                             + (f" (and {len(missing) - 20} more)" if len(missing) > 20 else ""))
        add, remove = list(add), list(remove)
        add, remove = clean_tags(add) if add else [], clean_tags(remove) if remove else []
        removed = self.store.remove_tags(ids, remove) if remove and ids else 0
        added = self.store.add_tags([(i, t, tagging.USER, None) for i in ids for t in add]) if add else 0
        return {"added": added, "removed": removed}

    # -- label sets: named lists of labels to classify into, kept in the library folder ------------------------------
    def label_sets(self) -> dict[str, list[str]]:
        """The saved label sets, by name (none saved: {}). They live in <library>/labelsets.json (the library
        folder, also for a ChromaDB store: a convenience of this library's users, not part of the index)."""
        import json

        try:
            data = json.loads((self.path / LABEL_SETS).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise LibraryError(f"cannot read {self.path / LABEL_SETS}: {exc}") from exc
        return {str(k): [str(x) for x in v] for k, v in data.items()} if isinstance(data, dict) else {}

    @_on_disk
    def save_label_set(self, name: str, labels: Iterable[str] | str) -> list[str]:
        """Save (or replace) a label set; returns its labels cleaned (at least two, as classification needs)."""
        from .learn.classify import clean_labels, parse_labels

        name = " ".join(str(name).split())
        if not name or len(name) > 64 or not name.isprintable():
            raise UsageError("a label set needs a name of 1 to 64 printable characters")
        cleaned = parse_labels(labels) if isinstance(labels, str) else clean_labels(list(labels))
        self._change_label_sets(lambda sets: sets.update({name: cleaned}))
        return cleaned

    @_on_disk
    def delete_label_set(self, name: str) -> bool:
        """Forget a label set; False when there was none of that name."""
        return self._change_label_sets(lambda sets: sets.pop(name, None) is not None)

    def _change_label_sets(self, change: Callable[[dict], object]):
        """Read, change and write the label sets under a lock (two servers or users saving at once lose nothing)."""
        import json

        with FileLock(self.path / "labelsets.lock"):
            sets = self.label_sets()
            result = change(sets)
            write_atomic(self.path / LABEL_SETS, lambda f: f.write(json.dumps(sets, indent=1).encode()))
        return result

    def tag_counts(self) -> dict[str, int]:
        """Every tag in the library with the number of images that carry it, most used first."""
        return self.store.tag_counts()

    # -- status ---------------------------------------------------------------------------------------------------
    def command(self, args: str) -> str:
        """A picseek command line for this library, for hints (config.command_for)."""
        return config.command_for(self.path, args, None if self.store.url == "built-in" else self.store.url)

    @_on_disk
    def status(self) -> dict:
        """The library at a glance; disk_bytes: the database and its caches (vectors, approximate index,
        thumbnails), and bytes_per_image that over the images (None while there are none)."""
        rec = self.recorded_model or {}
        images = self.store.count()
        thumbs = self.path / "thumbs"
        disk = self.store.disk_bytes() + (sum(p.stat().st_size for p in thumbs.rglob("*") if p.is_file())
                                          if thumbs.is_dir() else 0)
        return {"library": str(self.path), "model": rec.get("name"), "model_id": rec.get("model_id"),
                "dim": rec.get("dim"), "images": images, "errors": self.store.error_count(),
                "disk_bytes": disk, "bytes_per_image": round(disk / images) if images else None,
                "last_run": self.last_run(), "store": self.store.url, "ocr": self.ocr,
                "image_model": rec.get("image_model")}

    def errors(self, limit: int | None = None) -> list[dict]:
        return self.store.errors(limit)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ocr_json(text: TextRecord | None, searched: Iterable[str] = ()) -> dict | None:
    """The words read in an image as hits and the REST API show them (None: none read): the text, and each line
    with its box, score and whether it holds one of the `searched` words (folded, store.words.text_words)."""
    if text is None or not text.text:
        return None
    searched = list(searched)
    return {"text": text.text, "lines": [{"text": line["text"], "box": line["box"], "score": line["score"],
                                          "matched": bool(searched) and line_matches(line["text"], searched)}
                                         for line in text.lines]}


def _labels(labels: Iterable[str] | str) -> list[str]:
    """Labels as a list; one string is comma-separated labels ("cat, dog")."""
    return labels.split(",") if isinstance(labels, str) else list(labels)


def _as_query(query) -> Query:
    """A query string or path parsed; an image (PIL or encoded bytes) as the one term of a query."""
    if isinstance(query, Query):
        return query
    if isinstance(query, (Image.Image, bytes, bytearray)):
        return Query((Term(IMAGE, query),))
    return parse(query)


def image_model_space(image_model) -> str:
    """The space an image model's vectors are stored in (models/dinov2.py: "dinov2")."""
    return getattr(image_model, "space", None) or "image_model"


def _image_record(emb) -> dict | None:
    """What a library records of its embedder's image model (models/spaces.py), None where it has none."""
    if "_image_model" not in getattr(emb, "__dict__", {}):
        return None
    image_model = emb.image_model
    return {"name": image_model.name, "model_id": image_model.model_id, "space": emb.space, "dim": image_model.dim}


class _LazyModel:
    """The library's model, loaded on first use of any of its attributes."""

    def __init__(self, load: Callable):
        self._load = load

    def __getattr__(self, name: str):
        return getattr(self._load(), name)

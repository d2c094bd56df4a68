"""Indexing: scan -> decode (worker processes) -> embed (batched) -> write (one transaction per batch).

Decoding runs in a pool of worker processes that never import torch, a bounded number of files ahead of the
model, so decode and inference overlap and memory stays flat. Every batch is committed with its errors, so a run
killed at any point leaves a consistent library and the next run picks up what is left (the scan skips what is
committed). Deletions of vanished files happen at the end of a completed run, and only below the roots scanned.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context

import numpy as np

from .. import config
from ..models.base import ImageSpec
from ..paths import within
from ..store.base import INFO_COLUMNS, FileState, ImageRecord, TextRecord, recorded_run
from .images import DEFAULT_MAX_PIXELS, Decoded, decode_file
from .paths import FileEntry, is_remote
from .scan import ScanResult, WalkProblem, diff, normalize_roots, walk

log = logging.getLogger(__name__)
DEFAULT_BATCH_SIZE: int = config.default("batch_size")  # images per model call (the batch_size setting's default)
GPU_BATCH_SIZE = 128  # ... where the model runs on a GPU (`device` cuda): a batch of 16 leaves most of it idle


@dataclass
class Progress:
    phase: str  # "scan", "embed", "ocr" (reading the words in images indexed before), "done"
    done: int = 0
    total: int = 0
    errors: int = 0
    path: str = ""


@dataclass
class IndexReport:
    roots: list[str]
    scanned: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    errors: int = 0
    skipped_known_errors: int = 0
    texts_read: int = 0  # images whose words were read (OCR) in this run, with the ones embedded
    with_text: int = 0  # of those, how many had words
    filled: int = 0  # images indexed before an image model was added that got its space now (fill_space)
    fill_errors: int = 0  # of those, images that could not be read again (they keep their other spaces)
    seconds: float = 0.0
    error_samples: list[tuple[str, str]] = field(default_factory=list)

    def note_errors(self, rows: Iterable[tuple[str, str]]) -> None:
        """Count (path, reason) errors of this run, log them, and keep the first 20 as samples for the summary."""
        for path, reason in rows:
            self.errors += 1
            log.info("skipped %s: %s", path, reason)
            if len(self.error_samples) < 20:
                self.error_samples.append((path, reason))

    @property
    def embedded(self) -> int:
        return self.added + self.updated

    @property
    def images_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["embedded"] = self.embedded
        d["images_per_s"] = round(self.images_per_s, 2)
        return d


def default_workers() -> int:
    """One decode process per usable core. They sleep once `window` files wait decoded, so they take cores from the
    model only while it is ahead; on 2 cores, 2 workers index 12 MP photos ~5% faster than 1 (the model alone keeps
    both cores busy, and one decoder loses the race for them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """Pool initializer: a decode worker dies with the indexing process, even one killed by SIGKILL (else the
    workers, which hold the resource tracker's pipe too, wait on their queue forever). PDEATHSIG fires when the
    *thread* that started the worker exits; ProcessPoolExecutor (spawn) starts workers from the thread that calls
    submit, and decode_stream submits and shuts the pool down in the one indexing thread, so that is the run."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - a libc without prctl: the getppid check remains
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect: nobody will ever read our results
        os._exit(0)


def _pool(workers: int, ctx) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_die_with_parent,
                               initargs=(os.getpid(),))


def decode_stream(entries: Sequence[FileEntry], spec: ImageSpec, workers: int, window: int,
                  max_pixels: int = DEFAULT_MAX_PIXELS, ocr: bool = False) -> Iterator[tuple[FileEntry, Decoded]]:
    """Decode files in order, at most `window` ahead of the consumer. workers=0 decodes inline. `ocr`: the
    workers also read the words in each image (Decoded.text).
    A worker that dies (a decoder crash) costs only the files it held: they are retried once, then reported."""
    if workers <= 0:
        for e in entries:
            yield e, decode_file(e.path, spec, max_pixels, ocr=ocr)
        return
    pending: deque[tuple[FileEntry, Future, int]] = deque()
    todo = deque((e, 0) for e in entries)
    ctx = get_context("spawn")
    pool = _pool(workers, ctx)
    try:
        while todo or pending:
            while todo and len(pending) < window:
                e, tries = todo.popleft()
                pending.append((e, pool.submit(decode_file, e.path, spec, max_pixels, ocr=ocr), tries))
            e, fut, tries = pending.popleft()
            try:
                yield e, fut.result()
            except BrokenProcessPool:
                log.warning("a decode worker died; restarting the pool")
                pool.shutdown(wait=False, cancel_futures=True)
                pool = _pool(workers, ctx)
                retry = [(e, tries)] + [(pe, pt) for pe, _, pt in pending]
                pending.clear()
                for re_, rt in reversed(retry):
                    if rt >= 1:
                        yield re_, Decoded(re_.path, None, None, "", "the image decoder crashed on this file")
                    else:
                        todo.appendleft((re_, rt + 1))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _batches(stream: Iterable[tuple[FileEntry, Decoded]], size: int) -> Iterator[list[tuple[FileEntry, Decoded]]]:
    batch: list[tuple[FileEntry, Decoded]] = []
    for item in stream:
        batch.append(item)
        ok = sum(1 for _, d in batch if d.error is None)
        if ok >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _info_dict(d: Decoded) -> dict:
    return asdict(d.info) if d.info is not None else {}


def embed_batches(embedder, stream: Iterable[tuple[FileEntry, Decoded]], batch_size: int) -> Iterator[
        tuple[list[tuple[FileEntry, Decoded]], list[ImageRecord], list[tuple[str, int, int, str]]]]:
    """The embed stage: decoded files in batches of `batch_size` good images -> (batch, records with a vector per
    space, error rows (path, size, mtime_ns, reason)); one model call per batch. Used by run_index and by the
    Spark tasks (picseek.scale.tasks)."""
    for batch in _batches(stream, batch_size):
        good = [(e, d) for e, d in batch if d.error is None]
        bad = [(e.path, e.size, e.mtime_ns, d.error) for e, d in batch if d.error is not None]
        records = []
        if good:
            vectors = embedder.embed_pixels(np.stack([d.pixels for _, d in good]))
            for i, (e, d) in enumerate(good):
                records.append(ImageRecord(e.path, e.size, e.mtime_ns, d.content_hash, _info_dict(d),
                                           {space: v[i] for space, v in vectors.items()}, d.text))
        yield batch, records, bad


def run_index(store, embedder, roots: Iterable[str], *, workers: int | None = None,
              batch_size: int = DEFAULT_BATCH_SIZE, retry_errors: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
              progress: Callable[[Progress], None] | None = None, skip: Sequence[str] = (),
              scope: Sequence[str] | None = None, ocr: bool = False, fill: str | None = None) -> IndexReport:
    """Bring the store in step with the files below `roots`. Returns what was done. `scope`: the folders the
    roots are part of (a watcher's run of the subfolders where files changed): symbolic links are followed within
    them, and only a scope folder left without images is taken for a disk that is not mounted (a subfolder whose
    last photo was deleted is just empty). `ocr`: the words in each embedded image are read in the decode
    workers and written with its vectors; then the images indexed before without them are read (decode and OCR
    only, nothing re-embedded), a batch per transaction. `fill`: a space of the embedder (an image model's,
    models/spaces.py) to fill in, after the scan's work, for every image of the library that lacks it
    (`fill_space`)."""
    t0 = time.perf_counter()
    roots = normalize_roots(roots)
    notify = progress or (lambda p: None)
    report = IndexReport(roots=roots)

    def summary() -> dict:
        report.seconds = time.perf_counter() - t0
        return report.as_dict()

    try:
        with recorded_run(store, roots, summary):
            notify(Progress("scan"))
            problems: list[WalkProblem] = []
            entries = list(walk(roots, skip=skip, problems=problems, scope=scope))
            report.scanned = len(entries)
            known, indexed = store.known_errors(roots), store.file_states(roots)
            scoped = roots if scope is None else [r for r in roots if r in set(normalize_roots(scope))]
            problems += _emptied_roots(scoped, entries, indexed)
            scan: ScanResult = diff(entries, indexed, known, retry_errors, problems)
            report.unchanged, report.skipped_known_errors = scan.unchanged, scan.known_errors
            _record_problems(store, problems, known, report)
            if scan.moved:
                store.move(scan.moved)
                report.moved = len(scan.moved)
            workers = workers if workers is not None else default_workers()
            _embed_all(store, embedder, scan, report, workers, batch_size, max_pixels, notify, ocr)
            if ocr:
                _read_missing_texts(store, roots, report, workers, batch_size, max_pixels, notify)
            report.removed = store.delete_paths(scan.missing + scan.stale_errors)
            if fill:
                fill_space(store, embedder, fill, report, workers if workers is not None else default_workers(),
                           batch_size, max_pixels, notify)
    finally:
        notify(Progress("done", report.embedded, report.embedded, report.errors))
    return report


def _emptied_roots(roots: Sequence[str], entries: Sequence[FileEntry], indexed: Mapping) -> list[WalkProblem]:
    """A root folder where no image is left although the library holds some below it is far more often a disk or
    share that is not mounted than a folder whose every photo was deleted: its images are kept (and it is reported,
    with how to forget them) instead of dropped."""
    out = []
    for root in roots:
        if is_remote(root) or not os.path.isdir(root) or any(within(e.path, [root]) for e in entries):
            continue
        n = sum(1 for p in indexed if within(p, [root]))
        if n:
            st = os.stat(root)
            reason = (f"no images in this folder, which had {n} indexed (a disk that is not mounted?): they are kept; "
                      f"picseek remove FOLDER forgets them")
            out.append(WalkProblem(root, st.st_size, st.st_mtime_ns, reason, folder=True))
    return out


def _record_problems(store, problems: Sequence[WalkProblem], known: dict[str, tuple[int, int]],
                     report: IndexReport) -> None:
    """Entries the walk could not follow become error rows like files that failed (status --errors); one that is
    recorded already, unchanged, counts as a known error."""
    new = [p for p in problems if known.get(p.path) != (p.size, p.mtime_ns)]
    report.skipped_known_errors += len(problems) - len(new)
    if new:
        store.write_images([], [(p.path, p.size, p.mtime_ns, p.reason) for p in new])
        report.note_errors((p.path, p.reason) for p in new)


def _warm_up(embedder) -> None:
    """Load the model's session on a thread while the workers decode the first batch (~0.5 s saved per run). A
    failure is left for the first embed_pixels call to raise, in the indexing thread, with its own message."""
    warm = getattr(embedder, "warm_up", None)
    if warm is None:
        return

    def run() -> None:
        try:
            warm()
        except Exception as exc:  # noqa: BLE001 - embed_pixels repeats the load and raises
            log.debug("warm-up failed: %s", exc)

    threading.Thread(target=run, name="picseek-warm-up", daemon=True).start()


def _embed_all(store, embedder, scan: ScanResult, report: IndexReport, workers: int, batch_size: int,
               max_pixels: int, notify: Callable[[Progress], None], ocr: bool = False) -> None:
    total = len(scan.todo)
    notify(Progress("embed", 0, total))
    if not total:
        return  # nothing to embed: the model is never touched (Library passes it lazily), no workers start
    if workers > 1:
        workers = min(workers, -(-total // batch_size))  # a second process (~0.4 s to start) needs a batch to repay it
    window = max(2 * batch_size, 4 * max(workers, 1))
    stream = decode_stream(scan.todo, embedder.image_spec, workers, window, max_pixels, ocr)
    _warm_up(embedder)
    try:
        _write_batches(store, scan, report, embed_batches(embedder, stream, batch_size), total, notify)
    finally:
        stream.close()  # shut the pool down now, in this thread (not at garbage collection, maybe in another one)


def _write_batches(store, scan: ScanResult, report: IndexReport, batches, total: int,
                   notify: Callable[[Progress], None]) -> None:
    done = 0
    for batch, records, bad in batches:
        store.write_images(records, bad)
        for rec in records:
            if rec.path in scan.changed:
                report.updated += 1
            else:
                report.added += 1
        report.note_errors((path, reason) for path, _, _, reason in bad)
        _count_texts(report, [(rec.path, rec.text) for rec in records])
        done += len(batch)
        notify(Progress("embed", done, total, report.errors, batch[-1][0].path))


def _count_texts(report: IndexReport, texts: Iterable[tuple[str, TextRecord | None]]) -> None:
    """Count the images read (and with words) in this run; a failure to read one is logged, not an error of the
    file (it is indexed, and recorded as read)."""
    for path, text in texts:
        if text is not None:
            report.texts_read += 1
            report.with_text += bool(text.text)
            if text.error:
                log.warning("%s: %s", path, text.error)


def _read_missing_texts(store, roots: Sequence[str], report: IndexReport, workers: int, batch_size: int,
                        max_pixels: int, notify: Callable[[Progress], None]) -> None:
    """Read the words in the images below `roots` that have no OCR record (indexed before OCR was on): decode
    and OCR only, `batch_size` images per transaction, so a killed run keeps what it read. A file that cannot be
    read now gets a record with the reason (it is indexed; its vectors stay)."""
    todo: list[FileState] = store.missing_texts(roots)
    if not todo:
        return
    total = len(todo)
    notify(Progress("ocr", 0, total))
    by_path = {s.path: s for s in todo}
    if workers > 1:
        workers = min(workers, -(-total // batch_size))
    entries = [FileEntry(s.path, s.size, s.mtime_ns) for s in todo]
    # the decode for the first pass: the default model input size (the pixels themselves are not used)
    stream = decode_stream(entries, ImageSpec(), workers, max(2 * batch_size, 4 * max(workers, 1)), max_pixels,
                           ocr=True)
    done, rows, paths = 0, [], []
    try:
        for e, d in stream:
            state = by_path[e.path]
            if d.error is not None:
                rows.append((state.id, TextRecord("", [], f"reading text failed: {d.error}")))
                paths.append(e.path)
            elif d.content_hash == state.content_hash and d.text is not None:  # (not a file changed since the scan)
                rows.append((state.id, d.text))
                paths.append(e.path)
            done += 1
            if len(rows) >= batch_size or done == total:
                store.write_texts(rows)
                _count_texts(report, [(path, text) for path, (_, text) in zip(paths, rows)])
                rows, paths = [], []
                notify(Progress("ocr", done, total, report.errors, e.path))
    finally:
        stream.close()


def fill_space(store, embedder, space: str, report: IndexReport, workers: int, batch_size: int,
               max_pixels: int, notify: Callable[[Progress], None]) -> None:
    """Give every image of the store that has no vector in `space` one, from `embedder.embed_image_space` (an image
    model added to a library after its images were indexed: models/spaces.py), keeping its other vectors as they are
    (nothing else is re-embedded). Each batch is one write, so an interrupted fill continues where it stopped on the
    next run. A file that changed since it was indexed is left to the index run of its folder; one that cannot be
    read now is counted in `report.fill_errors` and logged (it keeps its other spaces)."""
    have = set(store.vectors(space)[0].tolist()) if space in store.spaces() else set()
    todo = [s for s in store.file_states([]).values() if s.id not in have]
    total = len(todo)
    if not total:
        return
    others = [s for s in store.spaces() if s != space]
    notify(Progress("fill", 0, total))
    by_path = {s.path: s for s in todo}
    window = max(2 * batch_size, 4 * max(workers, 1))
    stream = decode_stream([FileEntry(s.path, s.size, s.mtime_ns) for s in todo], embedder.image_spec,
                           min(workers, -(-total // batch_size)), window, max_pixels)
    done = 0
    try:
        for batch in _batches(stream, batch_size):
            good = []
            for e, d in batch:
                state = by_path[e.path]
                if d.error is None and d.content_hash == state.content_hash:
                    good.append((state, d))
                else:
                    report.fill_errors += 1
                    log.info("could not fill %s for %s: %s", space, e.path, d.error or "the file changed since it "
                             "was indexed (index its folder again)")
            if good:
                vectors = embedder.embed_image_space(np.stack([d.pixels for _, d in good]))
                ids = [s.id for s, _ in good]
                rows, texts = store.get_images(ids), store.get_texts(ids)  # (kept: the words read, too)
                stored = {sp: store.vectors_of(ids, sp) for sp in others}  # (one batched read per space)
                records = []
                for i, (state, _) in enumerate(good):
                    kept = {sp: vs[state.id] for sp, vs in stored.items() if state.id in vs}
                    info = {k: rows.get(state.id, {}).get(k) for k in INFO_COLUMNS}
                    records.append(ImageRecord(state.path, state.size, state.mtime_ns, state.content_hash, info,
                                               {**kept, space: vectors[i]}, texts.get(state.id)))
                store.write_images(records, [])
                report.filled += len(records)
            done += len(batch)
            notify(Progress("fill", done, total, report.fill_errors, batch[-1][0].path))
    finally:
        stream.close()

"""Batch query mining (`picseek mine`, `Library.mine`): many text queries over a library at once.

The queries are embedded in batches, then ranked against every stored vector in one matrix product (the vector
cache's float32 matrix, `store.vectors`), taken a block of queries by a chunk of images at a time so memory stays
bounded (QUERY_BLOCK x CHUNK_ROWS scores), keeping each query's best `top` with `argpartition`. Filters and tags
narrow the images through the store's own `select` (the allowed ids read a page at a time with `browse`). An
image-text matching model (query/rerank.py, kept loaded) then scores each query's candidates: here, one query's
images per call (`score_groups`), or on Spark (scale/spark.py `mine_on_spark`) where `itm_frames` is the task body.

Output rows: query, rank, image_id, path, score (cosine), rerank_score (None without re-ranking); with re-ranking
each query's rows are ordered by it (images that could not be read last, in their cosine order).
"""
from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError, one_line
from ..extras import PARQUET, require
from ..ingest.images import load_image
from ..ingest.sources import pick_column, read_rows
from ..store.base import clean_tags
from ..store.filters import parse_filters

log = logging.getLogger(__name__)

COLUMNS = ("query", "rank", "image_id", "path", "score", "rerank_score")
QUERY_COLUMNS = ("query", "text", "caption", "prompt", "q")
OUT_FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
TEXT_BATCH = 256  # queries per embed_texts call
QUERY_BLOCK = 1024  # queries per block of the product
CHUNK_ROWS = 16384  # images per block of the product (QUERY_BLOCK x CHUNK_ROWS float32: 64 MB)
BROWSE_PAGE = 10000
IMAGE_CACHE = 512  # decoded images kept while re-ranking (queries share candidates)

# (groups of (query text, [image paths])) -> per group, a score per path (None: the image could not be read)
ScoreGroups = Callable[[list[tuple[str, list[str]]]], list[list[float | None]]]


@dataclass
class MineReport:
    queries: int
    images: int  # images the queries were ranked against (after filters)
    top: int
    rows: int = 0
    rerank: str | None = None
    unreadable: int = 0  # candidates the re-ranker could not load
    seconds_embed: float = 0.0
    seconds_rank: float = 0.0
    seconds_rerank: float = 0.0
    out: str | None = None

    @property
    def seconds(self) -> float:
        return self.seconds_embed + self.seconds_rank + self.seconds_rerank

    def as_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 3),
                "queries_per_s": round(self.queries / self.seconds, 1) if self.seconds else None}


def read_queries(path: str | os.PathLike, column: str | None = None) -> list[str]:
    """The queries of a file: plain text (one per line, blank lines skipped), or a column of a CSV/TSV, JSON,
    JSON Lines or Parquet table (`column`, else query/text/caption/prompt). Repeats are dropped."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"file not found: {path}")
    if p.suffix.lower() in (".txt", "") and column is None:
        try:
            texts = p.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError:
            raise UsageError(f"{p}: not UTF-8 text") from None
    else:
        rows = list(read_rows(p))
        col = pick_column(rows, column, QUERY_COLUMNS, source=p,
                          unknown="{source}: no column {asked!r}; its columns: {columns}",
                          not_found="{source}: no query column (looked for {candidates}; columns: {columns}): "
                                    "name it with --column")
        texts = [str(r.get(col)) for r in rows if r.get(col) is not None]
    out = list(dict.fromkeys(" ".join(t.split()) for t in texts if t.strip()))
    if not out:
        raise UsageError(f"{p}: no queries in it")
    return out


def embed_queries(embedder, queries: Sequence[str], batch: int = TEXT_BATCH) -> np.ndarray:
    """Unit text vectors of the queries, `batch` at a time."""
    parts = [np.asarray(embedder.embed_texts(list(queries[i:i + batch])), dtype=np.float32)
             for i in range(0, len(queries), batch)]
    q = np.concatenate(parts) if parts else np.zeros((0, int(embedder.dim)), np.float32)
    return q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)


def top_k(queries: np.ndarray, matrix: np.ndarray, k: int, allowed: np.ndarray | None = None,
          chunk_rows: int = CHUNK_ROWS, query_block: int = QUERY_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Each query's best `k` rows of `matrix` by dot product (rows where `allowed` is False left out): (rows,
    scores), both Q x k' with k' = min(k, allowed rows), best first."""
    n = matrix.shape[0]
    k = min(k, n if allowed is None else int(allowed.sum()))
    rows_out = np.zeros((len(queries), k), np.int64)
    scores_out = np.zeros((len(queries), k), np.float32)
    if k <= 0:
        return rows_out, scores_out
    for qs in range(0, len(queries), query_block):
        q = queries[qs:qs + query_block]
        best_s = np.full((len(q), 0), -np.inf, np.float32)
        best_i = np.zeros((len(q), 0), np.int64)
        for start in range(0, n, chunk_rows):
            s = q @ np.asarray(matrix[start:start + chunk_rows], dtype=np.float32).T
            if allowed is not None:
                s[:, ~allowed[start:start + chunk_rows]] = -np.inf
            kk = min(k, s.shape[1])  # this chunk's best kk per query, then merged with the best so far
            part = np.argpartition(s, s.shape[1] - kk, axis=1)[:, -kk:]
            best_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
            best_i = np.concatenate([best_i, part + start], axis=1)
            if best_s.shape[1] > k:
                keep = np.argpartition(best_s, best_s.shape[1] - k, axis=1)[:, -k:]
                best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
        order = np.argsort(-best_s, axis=1, kind="stable")
        rows_out[qs:qs + len(q)] = np.take_along_axis(best_i, order, 1)
        scores_out[qs:qs + len(q)] = np.take_along_axis(best_s, order, 1)
    return rows_out, scores_out


def allowed_ids(store, where: Iterable[str] = (), tags: Iterable[str] = (), cwd: str | None = None) -> set[int] | None:
    """The ids filters and tags allow (None: every image), through the store's `select` and `browse`."""
    where, tags = list(where), list(tags)
    if not where and not tags:
        return None
    selection = store.select(parse_filters(where), clean_tags(tags) if tags else [], (), cwd or os.getcwd())
    if selection.everything:
        return None
    found: set[int] = set()
    after = None
    while not selection.empty:
        page = store.browse(selection, BROWSE_PAGE, after)
        found.update(int(i) for i, _ in page.items)
        if page.next is None:
            break
        after = page.next
    return found


def mine(store, embedder, queries: Sequence[str], top: int, *, where: Iterable[str] = (), tags: Iterable[str] = (),
         space: str = "main", rerank: str | None = None, score_groups: ScoreGroups | None = None,
         max_pixels: int | None = None, cwd: str | None = None) -> tuple[dict[str, list], MineReport]:
    """Rank every query against the library: (columns of COLUMNS, report). `rerank` names the re-ranker; its
    scoring runs through `score_groups` (default: here, `local_scorer`)."""
    if top < 1:
        raise UsageError("--top must be at least 1")
    queries = list(queries)
    if not queries:
        raise UsageError("no queries given")
    allowed_set = allowed_ids(store, where, tags, cwd)
    ids, matrix = store.vectors(space)
    allowed = None if allowed_set is None else np.isin(ids, np.fromiter(allowed_set, np.int64, len(allowed_set)))
    if allowed is not None and allowed.sum() * 4 < len(ids):  # a selective filter: rank only its rows
        rows_of = np.flatnonzero(allowed)
        ids, matrix, allowed = ids[rows_of], matrix[rows_of], None
    report = MineReport(len(queries), len(ids) if allowed is None else int(allowed.sum()), top, rerank=rerank)
    t0 = time.perf_counter()
    q = embed_queries(embedder, queries)
    t1 = time.perf_counter()
    rows, scores = top_k(q, matrix, top, allowed)
    report.seconds_embed, report.seconds_rank = t1 - t0, time.perf_counter() - t1
    image_ids = ids[rows] if rows.size else rows
    paths = {i: r["path"] for i, r in store.get_images(sorted({int(x) for x in image_ids.ravel()})).items()}
    groups = [(text, [int(x) for x in image_ids[n]], [float(s) for s in scores[n]]) for n, text in enumerate(queries)]
    reranked: list[list[float | None]] | None = None
    if rerank:
        t2 = time.perf_counter()
        scorer = score_groups or local_scorer(rerank, max_pixels)
        reranked = scorer([(text, [paths.get(i, "") for i in got]) for text, got, _ in groups])
        report.seconds_rerank = time.perf_counter() - t2
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    for n, (text, got, cos) in enumerate(groups):
        extra = reranked[n] if reranked is not None else [None] * len(got)
        report.unreadable += sum(1 for x in extra if x is None) if reranked is not None else 0
        order = range(len(got)) if reranked is None else sorted(
            range(len(got)), key=lambda j: (extra[j] is None, -(extra[j] or 0.0)))
        for rank, j in enumerate(order, 1):
            for c, v in zip(COLUMNS, (text, rank, got[j], paths.get(got[j]), cos[j], extra[j])):
                cols[c].append(v)
    report.rows = len(cols["query"])
    return cols, report


# ---------------------------------------------------------------------------------------------- re-ranking


class _Images:
    """Decoded images by path, the last IMAGE_CACHE kept (a query's candidates often are another's)."""

    def __init__(self, max_pixels: int | None):
        self.max_pixels, self.cache = max_pixels, OrderedDict()

    def get(self, path: str):
        if path in self.cache:
            self.cache.move_to_end(path)
            return self.cache[path]
        try:
            img = load_image(path, self.max_pixels) if self.max_pixels else load_image(path)
            img.load()
        except Exception as exc:  # noqa: BLE001 - one unreadable image must not stop the run
            log.warning("re-ranking skipped %s: %s", path, one_line(exc))
            img = None
        self.cache[path] = img
        if len(self.cache) > IMAGE_CACHE:
            self.cache.popitem(last=False)
        return img


def score_group(model, images: _Images, text: str, paths: Sequence[str]) -> list[float | None]:
    """One query's candidates scored by the re-ranker (None where the image cannot be read)."""
    loaded = [(j, img) for j, p in enumerate(paths) if p and (img := images.get(p)) is not None]
    out: list[float | None] = [None] * len(paths)
    if loaded:
        for (j, _), s in zip(loaded, model.score([img for _, img in loaded], text)):
            out[j] = float(s)
    return out


def local_scorer(rerank: str, max_pixels: int | None) -> ScoreGroups:
    """Score every group in this process with the (kept) re-ranker `rerank`."""
    from .rerank import load_reranker

    def run(groups: list[tuple[str, list[str]]]) -> list[list[float | None]]:
        model = load_reranker(rerank)
        images = _Images(max_pixels)
        return [score_group(model, images, text, paths) for text, paths in groups]

    return run


def itm_frames(frames: Iterator, rerank: str, max_pixels: int | None, threads: int | None = None) -> Iterator:
    """The `mapInPandas` body of Spark mining: rows (qi, rank, query, path) in, (qi, rank, rerank_score) out; the
    re-ranker is loaded once per Python worker (query/rerank.py keeps it, by name), a query's rows scored together."""
    import pandas as pd

    from ..scale.tasks import set_task_threads
    from .rerank import load_reranker

    model = load_reranker(rerank)
    set_task_threads(threads)  # after the load: torch is imported by then
    images = _Images(max_pixels)
    for frame in frames:
        out = {"qi": [], "rank": [], "rerank_score": []}
        for (qi, text), group in frame.groupby(["qi", "query"], sort=False):
            scores = score_group(model, images, text, list(group["path"].fillna("")))
            out["qi"] += [int(qi)] * len(group)
            out["rank"] += [int(r) for r in group["rank"]]
            out["rerank_score"] += scores
        yield pd.DataFrame(out, columns=["qi", "rank", "rerank_score"])


# ---------------------------------------------------------------------------------------------- output


def out_format(out: str | os.PathLike) -> str:
    fmt = OUT_FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise UsageError(f"{out}: write hits to a .parquet, .csv or .jsonl file")
    if fmt == "parquet":
        require("writing Parquet", PARQUET)
    return fmt


def write_hits(cols: dict[str, list], out: str | os.PathLike) -> None:
    """The mined rows into `out` (format by extension), written whole or not at all."""
    import csv
    import json

    from .._fs import atomic_path

    fmt = out_format(out)
    n = len(cols["query"])
    with atomic_path(Path(out).expanduser()) as tmp:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pa.schema([("query", pa.string()), ("rank", pa.int32()), ("image_id", pa.int64()),
                                ("path", pa.string()), ("score", pa.float32()), ("rerank_score", pa.float32())])
            pq.write_table(pa.table(cols, schema=schema), tmp)
        elif fmt == "csv":
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(COLUMNS)
                for i in range(n):
                    w.writerow(["" if cols[c][i] is None else cols[c][i] for c in COLUMNS])
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for i in range(n):
                    f.write(json.dumps({c: cols[c][i] for c in COLUMNS}, ensure_ascii=False) + "\n")


__all__ = ["MineReport", "read_queries", "embed_queries", "top_k", "mine", "write_hits", "itm_frames",
           "local_scorer", "COLUMNS"]

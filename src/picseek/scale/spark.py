"""The driver side of Spark indexing: inputs -> a DataFrame -> mapInPandas(decode + embed) -> Parquet shards.

    from picseek.scale.spark import index_on_spark
    report = index_on_spark("local[4]", "photos.parquet", "shards/", model="clip-vit-b-32")
    Library("~/lib").merge(["shards/"])

Inputs: a folder or an object-store prefix (walked as `picseek index` walks it), a list file (Parquet, CSV/TSV,
JSON, JSON Lines or one path/URL per line, read with ingest/sources.read_rows) of local paths, file:// URLs or
fsspec URLs, a list of strings, or a Spark DataFrame with a column of them (for lists too big for the driver).
A list file in distributed storage (hdfs://, s3a://, ... with a list extension) is read by Spark as a DataFrame.
The shards are written with Spark's DataFrame writer, whose output committer publishes only the files of
successful task attempts: a task that fails and is retried leaves no duplicate rows.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import PicseekError, UsageError, one_line
from ..ingest.images import DEFAULT_MAX_PIXELS
from ..ingest.paths import file_url_path, has_image_extension, is_remote, is_url, store_path
from ..ingest.pipeline import DEFAULT_BATCH_SIZE
from ..paths import to_text
from .shards import SPARK_SCHEMA
from .tasks import UNKNOWN, TaskSpec, embed_frames

log = logging.getLogger(__name__)
INPUT_SCHEMA = "path string, size long, mtime_ns long"
ROWS_PER_PARTITION = 512
# columns that name an image, most likely first (a list may have several: the first present wins)
PATH_COLUMNS = ("path", "url", "uri", "file", "filepath", "file_path", "image_path", "image", "image_url",
                "photo_image_url", "img_url", "filename", "file_name", "src")
_SPARK_LISTS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv", ".json": "json",
                ".jsonl": "json", ".ndjson": "json", ".txt": "text", ".lst": "text"}
_SHARD_LEFTOVERS = ("part-", "_SUCCESS", "_temporary", "._SUCCESS", ".part-", "_committed", "_started")


@dataclass
class SparkReport:
    shards: str
    master: str
    model: str
    inputs: int = 0
    partitions: int = 0
    embedded: int = 0
    errors: int = 0
    seconds: float = 0.0
    error_samples: list[tuple[str, str]] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["images_per_s"] = round(self.images_per_s, 2)
        return d


class SparkError(PicseekError):
    """Spark could not start or the job failed as a whole (not one bad input: those are error rows)."""


# ---------------------------------------------------------------------------------------------- inputs


def read_inputs(source, column: str | None = None, skip: Sequence[str] = ()) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) for every input, in order, without repeats. size/mtime_ns are UNKNOWN where only a
    worker can look them up (list inputs); folders and prefixes are walked here (the listing has them), leaving
    out the `skip` folders (a library inside the folder). Paths travel as paths.to_text (valid text for Spark's
    string columns, whatever the file name); the tasks and the shards turn them back."""
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if is_remote(text) or Path(text).expanduser().is_dir() or has_image_extension(text):
            from ..ingest.scan import normalize_roots, walk

            return [(to_text(e.path), e.size, e.mtime_ns) for e in walk(normalize_roots([text]), skip=skip)]
        paths = _list_paths(Path(text).expanduser(), column)
    else:
        paths = [store_path(str(p)) for p in source]
    seen: dict[str, None] = dict.fromkeys(to_text(p) for p in paths if p)
    return [(p, UNKNOWN, UNKNOWN) for p in seen]


def _list_paths(path: Path, column: str | None) -> list[str]:
    from ..ingest.sources import read_rows

    rows = list(read_rows(path))
    if not rows:
        raise UsageError(f"{path}: no rows")
    col = path_column(rows, column, path)
    base = path.resolve().parent
    out = []
    for r in rows:
        value = r.get(col)
        if value is None or not str(value).strip():
            continue
        text = str(value).strip()
        if not is_url(text):
            text = str(base / Path(text).expanduser())  # relative paths are relative to the list
        out.append(store_path(text))
    return out


def path_column(rows: Sequence[dict], column: str | None, source: Path | str) -> str:
    """The column that holds the paths/URLs: `column`, else a usual name, else the first whose cells look like
    paths or URLs."""
    from ..ingest.sources import pick_column

    return pick_column(rows, column, PATH_COLUMNS, looks_right=lambda c: "/" in c or has_image_extension(c),
                       key=lambda k: str(k).strip().lower(), header_rows=100, source=source,
                       unknown="{source}: no column {asked!r}; its columns: {columns}",
                       not_found="{source}: no column of image paths or URLs found: name it with --url-column "
                                 "(columns: {columns})")


def model_for_library(lib, asked: str | None) -> str:
    """The model name the workers build for a library (`Library.model_name`: its recorded model, a different `asked`
    refused), or without a library `asked`, else the `model` setting ("auto" is resolved by index_on_spark)."""
    from .. import config

    return lib.model_name(asked) if lib is not None else config.get("model", asked)


# ---------------------------------------------------------------------------------------------- session


@contextmanager
def spark_session(spark_or_master=None, app_name: str = "picseek-index",
                  conf: dict[str, str] | None = None) -> Iterator:
    """A SparkSession: the one given, the active one, or a new one for `master` (None: what spark-submit or
    spark-defaults.conf say) that is stopped on the way out. A local master runs the workers on this Python."""
    if spark_or_master is not None and not isinstance(spark_or_master, str):
        yield spark_or_master
        return
    SparkSession = _pyspark_session_class()
    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    master = spark_or_master
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    local = (master or "").startswith("local")
    if local or (master is None and "PYSPARK_GATEWAY_PORT" not in os.environ):  # this process starts Spark here
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers run picseek's Python, not `python3`
    if local:
        builder = builder.config("spark.ui.enabled", "false")
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - py4j/JVM start-up failures come in many types
        raise SparkError(f"cannot start Spark ({master or 'master from spark-submit'}): "
                         f"{one_line(exc, whole=True, limit=300)}; "
                         "is a Java 17+ runtime installed (java on PATH or JAVA_HOME)?") from None
    try:
        yield spark
    finally:
        spark.stop()


def _pyspark_session_class():
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UsageError("indexing on Spark needs pyspark: pip install 'picseek[spark]'") from None
    return SparkSession


_PY_ERROR = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt)): (.+)$", re.MULTILINE)


def job_failure(exc: BaseException) -> str:
    """One line for a failed job: the Python error a task raised (the last one in Spark's report), else the first
    line of the report."""
    found = [m for m in _PY_ERROR.finditer(str(exc)) if not m.group(1).startswith(("org.", "java.", "scala."))]
    if found:
        name, msg = found[-1].group(1).rsplit(".", 1)[-1], found[-1].group(2).strip()
        return one_line(RuntimeError(f"{name}: {msg}"), whole=True, limit=300)
    return one_line(exc, whole=True, limit=300)



# ---------------------------------------------------------------------------------------------- the job


def index_on_spark(spark_or_master, inputs, shards_dir: str | os.PathLike, *,
                   model: str | Callable[[], object] = "auto", batch_size: int = DEFAULT_BATCH_SIZE,
                   partitions: int | None = None, column: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                   threads: int | None = None, precision: str | None = None, device: str = "cpu",
                   skip: Sequence[str] = ()) -> SparkReport:
    """Embed every input on Spark and write the shards to `shards_dir` (replaced if it holds earlier shards).

    spark_or_master: a SparkSession, or a master URL ("local[4]", "spark://host:7077", "yarn"; None: spark-submit's).
    inputs: a folder/prefix, a list file, a sequence of paths/URLs, or a DataFrame (`column`: its path column).
    model: a model name (resolved here: "auto" becomes a concrete name, so every worker builds the same model),
    or a picklable function that returns an Embedder. batch_size: images per model call in a task.
    partitions: Spark partitions (default: one per 512 inputs, at least the cluster's default parallelism).
    threads: model threads per task (default spark.task.cpus). precision: as `picseek index --precision`.
    device: "cpu", or "cuda" for GPU executors (each task uses the GPU Spark assigned it). skip: folders a walk
    leaves out."""
    t0 = time.perf_counter()
    spec = _task_spec(model, batch_size, max_pixels, threads, precision)
    spec = dataclasses.replace(spec, device=device)
    out = _shards_target(shards_dir)
    rows = None  # inputs this process can read are read before Spark starts: a bad list fails at once
    if not hasattr(inputs, "mapInPandas") and not _distributed_list(inputs):
        rows = read_inputs(inputs, column, skip)
        if not rows:
            raise UsageError(f"no images found in {os.fspath(inputs)}" if isinstance(inputs, (str, os.PathLike))
                             else "no inputs given")
    with spark_session(spark_or_master) as spark:
        frame, n, parts = _input_frame(spark, rows if rows is not None else inputs, column, partitions)
        report = SparkReport(shards=out, master=spark.sparkContext.master, model=spec.model, inputs=n,
                             partitions=parts)
        shards = frame.mapInPandas(functools.partial(embed_frames, spec=spec), SPARK_SCHEMA)
        try:
            shards.write.mode("overwrite").parquet(out)
        except Exception as exc:  # noqa: BLE001 - a Py4JJavaError whose first line names the failed task
            raise SparkError(f"the Spark job failed: {job_failure(exc)}") from None
        _count(spark, out, report)
    report.seconds = time.perf_counter() - t0
    return report


def _task_spec(model, batch_size: int, max_pixels: int, threads: int | None, precision: str | None) -> TaskSpec:
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, not {batch_size}")
    if callable(model):
        import hashlib

        from pyspark import cloudpickle  # what Spark ships the function with: equal bytes, the same model

        digest = hashlib.blake2b(cloudpickle.dumps(model), digest_size=8).hexdigest()
        key = f"factory:{getattr(model, '__qualname__', type(model).__name__)}:{digest}"
        return TaskSpec(key, batch_size, max_pixels, threads, factory=model, precision=precision)
    from ..models import registry

    name = registry.resolve_auto().name if model in (None, registry.AUTO) else registry.resolve(model).name
    return TaskSpec(name, batch_size, max_pixels, threads, precision=precision)


def _shards_target(shards_dir: str | os.PathLike) -> str:
    """A local folder becomes absolute; one that holds anything but earlier shards is refused (the writer would
    delete it). URLs (hdfs://, s3a://) are passed to Spark as they are."""
    text = os.fspath(shards_dir)
    if is_remote(text):
        return text
    path = Path(file_url_path(text) if is_url(text) else text).expanduser().resolve()
    if path.is_file():
        raise UsageError(f"shards folder {path} is a file")
    if path.is_dir():
        strange = [p.name for p in path.iterdir() if not p.name.startswith(_SHARD_LEFTOVERS)]
        if strange:
            raise UsageError(f"shards folder {path} holds other files ({', '.join(sorted(strange)[:3])}): "
                             "give an empty or new folder")
    return str(path)


def _remote_list(spark, url: str):
    """A list file in distributed storage (hdfs://, s3a://, ...) read by Spark itself into a DataFrame."""
    ext = os.path.splitext(url.split("?", 1)[0])[1].lower()
    fmt = _SPARK_LISTS[ext]
    reader = spark.read
    if fmt == "csv":
        return reader.option("header", True).option("sep", "\t" if ext == ".tsv" else ",").csv(url)
    if fmt == "text":
        from pyspark.sql import functions as F

        lines = reader.text(url).select(F.trim("value").alias("path"))
        return lines.where((F.col("path") != "") & ~F.col("path").startswith("#"))
    if fmt == "json":
        return reader.option("multiLine", ext == ".json").json(url)
    return reader.parquet(url)


def _distributed_list(inputs) -> bool:
    """A list file in distributed storage (hdfs://, s3a://, ...), which Spark reads."""
    if not is_remote(inputs):
        return False
    return os.path.splitext(inputs.split("?", 1)[0])[1].lower() in _SPARK_LISTS


def _input_frame(spark, inputs, column: str | None, partitions: int | None):
    """(DataFrame of path, size, mtime_ns; input count; partition count). `inputs`: rows from read_inputs, a
    DataFrame, or a list file in distributed storage."""
    default = spark.sparkContext.defaultParallelism
    if _distributed_list(inputs):
        inputs = _remote_list(spark, inputs)
    if hasattr(inputs, "mapInPandas"):  # a DataFrame
        from pyspark.sql import functions as F

        col = column or next((c for c in PATH_COLUMNS if c in inputs.columns), None)
        if col is None:
            raise UsageError(f"the input DataFrame has no path column (columns: {', '.join(inputs.columns)}): "
                             "name it with column=")
        frame = inputs.select(F.col(col).cast("string").alias("path")).where(F.col("path").isNotNull()).distinct()
        frame = frame.withColumn("size", F.lit(UNKNOWN).cast("long")).withColumn("mtime_ns",
                                                                                  F.lit(UNKNOWN).cast("long"))
        n = frame.count()
        parts = partitions or max(default, math.ceil(n / ROWS_PER_PARTITION))
        return frame.repartition(parts, "path"), n, parts
    rows = inputs
    parts = max(1, min(len(rows), partitions or max(default, math.ceil(len(rows) / ROWS_PER_PARTITION))))
    # parallelize slices the list deterministically: a retried task gets exactly the rows of the failed one
    rdd = spark.sparkContext.parallelize(rows, parts)
    return spark.createDataFrame(rdd, INPUT_SCHEMA), len(rows), parts


def _count(spark, out: str, report: SparkReport) -> None:
    from pyspark.sql import functions as F

    written = spark.read.parquet(out)
    counts = {r["ok"]: r["count"] for r in written.groupBy(F.col("error").isNull().alias("ok")).count().collect()}
    report.embedded, report.errors = counts.get(True, 0), counts.get(False, 0)
    report.error_samples = [(r["path"], r["error"]) for r in
                            written.where(F.col("error").isNotNull()).select("path", "error").limit(20).collect()]


# ---------------------------------------------------------------------------------------------- mining


def spark_scorer(spark_or_master, rerank: str, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 partitions: int | None = None, threads: int | None = None):
    """The `score_groups` of Spark mining (query/mine.py): the (query, candidate image) pairs become a DataFrame,
    partitioned by query, and `itm_frames` scores them in the Python workers (a re-ranker per worker, kept by
    name, as Spark indexing keeps its model); the scores come back to the driver."""
    from ..query.mine import itm_frames

    def run(groups: list[tuple[str, list[str]]]) -> list[list[float | None]]:
        import pandas as pd

        pairs = pd.DataFrame([(qi, rank, text, path) for qi, (text, paths) in enumerate(groups)
                              for rank, path in enumerate(paths)], columns=["qi", "rank", "query", "path"])
        out: list[list[float | None]] = [[None] * len(paths) for _, paths in groups]
        if pairs.empty:
            return out
        with spark_session(spark_or_master, app_name="picseek-mine") as spark:
            n = partitions or max(1, min(len(groups), spark.sparkContext.defaultParallelism))
            frame = spark.createDataFrame(pairs, schema="qi long, rank long, query string, path string")
            scored = frame.repartition(n, "qi").mapInPandas(
                functools.partial(itm_frames, rerank=rerank, max_pixels=max_pixels, threads=threads),
                "qi long, rank long, rerank_score double")
            try:
                result = scored.toPandas()
            except Exception as exc:  # noqa: BLE001 - a Py4JJavaError whose first line names the failed task
                raise SparkError(f"the Spark job failed: {job_failure(exc)}") from None
        for qi, rank, score in result.itertuples(index=False):
            out[int(qi)][int(rank)] = None if score is None or math.isnan(score) else float(score)
        return out

    return run


def mine_on_spark(spark_or_master, library, queries, *, top: int = 50, where: Sequence[str] = (),
                  tags: Sequence[str] = (), rerank: str | None = None, column: str | None = None,
                  out: str | os.PathLike | None = None, partitions: int | None = None,
                  threads: int | None = None):
    """`picseek mine --engine spark`: the candidates come from the library's one matrix product on the driver, the
    re-ranker's image-text matching runs on Spark (`spark_scorer`). Returns what `Library.mine` returns."""
    from .. import config

    scorer = spark_scorer(spark_or_master, rerank, max_pixels=config.get("max_image_pixels"),
                          partitions=partitions, threads=threads) if rerank else None
    return library.mine(queries, top=top, where=where, tags=tags, rerank=rerank, column=column, out=out,
                        score_groups=scorer)

"""Core commands: index, search, status, remove, models."""
from __future__ import annotations

import functools
import json
import os
import sys

import click

from ..errors import NOTHING_FOUND, ImageError
from ..ingest.paths import is_url
from ..paths import raw_bytes, shown
from ..request import SearchRequest
from . import preview
from .group import _open, cli, fail, nothing_found
from .options import json_option, limit_option, model_option, ocr_option, threshold_option, where_option
from .progress import Progress

EPILOG_INDEX = """\b
Examples:
  picseek index ~/Pictures
  picseek index ~/Pictures /mnt/photos --workers 2
  picseek index ~/Screenshots --ocr        # also read the words in the images (text:"..." finds them)
  picseek --library ~/work-lib index ./shots --model clip-vit-b-32
  picseek index --from-list photos.csv --url-column photo_image_url
  picseek index s3://my-bucket/photos gs://other-bucket/2024 https://example.com/photos/
  picseek index s3://bucket/photos --storage-option endpoint_url=http://minio:9000
  picseek index --engine spark --master local[4] ~/Pictures
  picseek index --engine spark --master yarn --from-list paths.parquet --shards hdfs:///picseek/run1
"""
EPILOG_SEARCH = """\b
Examples:
  picseek search "a dog running on the beach"
  picseek search ./holiday/IMG_0042.jpg --limit 20 --json
  picseek search https://example.com/cat.jpg
  picseek search id:42                     # more like an indexed image
  picseek search ./me.jpg + "in winter" - people
  picseek search '2:"at night"' + 0.5:./city.jpg
  picseek search tag:beach sunset --where 'taken>=2021-06-01' --sort date
  picseek search "a red car" --where camera~canon --where width>=1024
  picseek search 'text:"total due"' --where has_text=yes   # the words read in images (index --ocr)
  picseek search "sunset" --paths | xargs -d '\\n' feh
  picseek search "sunset" -0 | xargs -0 feh   # any file name, exactly
  cd ~/Pictures/2024 && picseek search "a cat" --here   # index this folder (new files only), search in it
The query language (terms, + and -, weights, tags) and the filters: docs/query.md.
"""



class _FolderOrUrl(click.Path):
    """An existing folder or file, or a URL (s3://, gs://, https://, file://, ...), checked when it is listed."""

    def convert(self, value, param, ctx):
        return value if is_url(str(value)) else super().convert(value, param, ctx)


@cli.command(epilog=EPILOG_INDEX)
@click.argument("folders", nargs=-1, type=_FolderOrUrl(exists=True, file_okay=True))
@click.option("--from-list", "from_list", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="Download the images a URL list names (txt, CSV, JSON, JSON Lines, Parquet) into the library's "
                   "cache, index them and import the list's other columns as metadata (instead of FOLDERS).")
@click.option("--url-column", metavar="COL", help="The --from-list column that holds the image URLs (default: url, "
              "photo_image_url, image_url, ... or the first column of URLs; with --engine spark: paths or URLs).")
@model_option()
@click.option("--workers", type=click.IntRange(0, 64), help="Decode worker processes (0 = decode in-process).")
@click.option("--batch-size", type=click.IntRange(1, 1024), help="Images per model batch.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "int8", "fp16"]),
              help="What runs a CLIP-family model: int8 (ONNX Runtime, exported once and cached), fp32 (the "
                   "reference), bf16 (fast only on CPUs with native bf16), fp16 (a GPU). Default auto: int8 where "
                   "available, fp16 on a GPU.")
@click.option("--runtime", type=click.Choice(["auto", "onnxruntime", "openvino"]),
              help="What runs a ready-ONNX model's int8 image tower on the CPU: onnxruntime, or openvino (pip "
                   "install 'picseek[openvino]'; calibrated once on the first photos indexed, cached). Default auto: "
                   "openvino where that extra is installed, else onnxruntime.")
@click.option("--device", metavar="DEVICE", help="Where the model embeds images: cpu (default), cuda or cuda:N (a "
              "GPU: pip install onnxruntime-gpu in place of onnxruntime; docs/deployment.md). With --engine spark: "
              "cuda uses each task's GPU.")
@click.option("--image-model", metavar="NAME", help="An image-only model whose space answers example-image queries "
              "(search by photo, similar, duplicates): dinov2-small, dinov2-base, hf:ORG/NAME. Recorded in the "
              "library; added to an existing one, it fills in that space for the images already indexed.")
@click.option("--retry-errors", is_flag=True, help="Try again files that failed before and did not change.")
@click.option("--rebuild", is_flag=True, help="Drop all vectors and re-embed everything (e.g. with a new --model).")
@ocr_option()
@click.option("--storage-option", "storage_option", multiple=True, metavar="KEY=VALUE",
              help="Option for the fsspec backend of URL roots (repeatable; JSON values), e.g. "
                   "endpoint_url=http://minio:9000, anon=true, profile=work. See docs/deployment.md.")
@click.option("--engine", type=click.Choice(["local", "spark"]), default="local", show_default=True,
              help="Where images are embedded: here, or on Apache Spark (pip install 'picseek[spark]'): one FOLDER, "
                   "or --from-list FILE of local paths/URLs that the workers read (nothing is downloaded), becomes "
                   "Parquet shards that are merged into the library (docs/deployment.md).")
@click.option("--master", metavar="URL", help="With --engine spark: the Spark master, e.g. local[4], "
              "spark://HOST:7077, yarn (default: Spark's own, local[*] unless spark-defaults.conf says otherwise).")
@click.option("--shards", metavar="DIR", help="With --engine spark: write the shards to DIR (a folder the "
              "executors share, or hdfs://, s3a://) and stop; load them later with picseek merge DIR.")
@json_option("Print the summary as JSON.")
@click.pass_context
def index(ctx, folders, from_list, url_column, model, workers, batch_size, precision, runtime, device, image_model,
          retry_errors, rebuild, ocr, storage_option, engine, master, shards, as_json):
    """Index the images in FOLDERS: new and changed files are embedded, moved ones followed, deleted ones dropped.

    FOLDERS may also be files, or URLs of images in object storage or on a web server (s3://bucket/prefix,
    gs://bucket/dir, https://host/dir/; pip install 'picseek[cloud]').

    Safe to interrupt: run it again and it continues where it stopped.
    """
    if bool(folders) == bool(from_list):
        raise click.UsageError("give FOLDERS to index, or --from-list FILE (not both)")
    if url_column and not from_list:
        raise click.UsageError("--url-column goes with --from-list")
    if storage_option and from_list:
        raise click.UsageError("--storage-option goes with URL roots, not --from-list")
    from ..ingest.remote import parse_storage_options

    storage_options = parse_storage_options(storage_option) or None
    if precision:
        ctx.obj["precision"] = precision
    if runtime:
        ctx.obj["runtime"] = runtime
    if device:
        ctx.obj["device"] = device
    if image_model:
        ctx.obj["image_model"] = image_model
    from .scale import check_spark_options, index_on_spark_cli

    if check_spark_options(engine, master, shards, **{"--workers": workers, "--retry-errors": retry_errors,
                                                      "--rebuild": rebuild, "--storage-option": storage_option,
                                                      "--ocr": ocr, "--runtime": runtime,
                                                      "--image-model": image_model}):
        return index_on_spark_cli(ctx, folders, from_list, url_column, model, master=master, shards=shards,
                                  batch_size=batch_size, as_json=as_json)
    if from_list:
        from .metadata import index_from_list

        return index_from_list(ctx, from_list, url_column, model, workers=workers, batch_size=batch_size,
                               retry_errors=retry_errors, rebuild=rebuild, as_json=as_json, ocr=ocr)

    lib = _open(ctx, model, create=True)
    with Progress.for_command(ctx, as_json) as shown_progress:  # (ends with the run: "done" comes on failure too)
        def progress(p) -> None:
            if p.phase == "scan":
                shown_progress.note(f"Scanning {', '.join(folders)} ...")
            elif p.phase == "embed":
                shown_progress.update(p.done, p.total, "indexing", errors=p.errors)
            elif p.phase == "ocr":
                shown_progress.update(p.done, p.total, "reading text", errors=p.errors)
            elif p.phase == "fill":
                shown_progress.update(p.done, p.total, "image space", errors=p.errors)

        report = lib.index(folders, workers=workers, batch_size=batch_size, retry_errors=retry_errors,
                           rebuild=rebuild, progress=progress, storage_options=storage_options, ocr=ocr)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    model = lib.recorded_model or {}
    click.echo(f"Indexed {report.scanned} files in {report.seconds:.1f} s with {model.get('name')}: "
               f"{report.added} added, {report.updated} updated, {report.moved} moved, {report.removed} removed, "
               f"{report.unchanged} unchanged, {report.errors} errors"
               + (f" ({report.images_per_s:.1f} images/s)" if report.embedded else ""))
    if report.texts_read:
        click.echo(f"Read the text of {report.texts_read} images: {report.with_text} with words")
    if report.filled or report.fill_errors:
        image = (lib.recorded_model or {}).get("image_model") or {}
        click.echo(f"Filled in the {image.get('space')} space ({image.get('name')}) for {report.filled} images"
                   + (f"; {report.fill_errors} could not be read again" if report.fill_errors else ""))
    if report.skipped_known_errors:
        click.echo(f"{report.skipped_known_errors} files that failed before were skipped (--retry-errors to retry)")
    for path, reason in report.error_samples[:5]:
        click.echo(f"  skipped {shown(path)}: {shown(reason)}", err=True)
    if report.errors > 5:
        click.echo("  ... see all with: picseek status --errors", err=True)


def _one_query_thread() -> None:
    """One query's text/image embedding is faster on one torch thread than on all cores (benchmarks/README.md:
    p50 about 2x, p95 about 6x faster, more on a busy machine). Set before torch is imported; the user's own
    OMP_NUM_THREADS wins."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def hit_output(command):
    """The output options of commands that print hits (search, similar): table, --json, --paths or --null,
    passed to the command as `output` ("table", "json", "paths" or "null")."""
    options = [
        json_option(help="JSON: id, path, score, via, width, height, taken_at, camera, fields, tags, ocr (the words "
                          "read in the image, each line with its box and whether it holds a searched word) and "
                          "matched_text (those lines). A file name that is not valid UTF-8 keeps its bytes as "
                          "\\udcXX escapes (Python's surrogateescape)."),
        click.option("--paths", is_flag=True, help="Bare paths, one per line (for pipes); line breaks, control "
                     "characters and undecodable bytes in a name are escaped (\\n, \\x1b, \\xff)."),
        click.option("--null", "-0", "null", is_flag=True, help="Bare paths exactly as on disk, each ended by a NUL "
                     "byte (for xargs -0)."),
        click.option("--preview", type=click.Choice(preview.PROTOCOLS), is_flag=False, flag_value="auto",
                     default="none", metavar="[PROTOCOL]", help="Thumbnails in the table, in terminals that draw "
                     "images: kitty, iterm (iTerm2, WezTerm), sixel (foot, mlterm, ...); auto (the default when "
                     "given without a value) detects the terminal; never into a pipe or a file."),
    ]
    for option in reversed(options):
        command = option(command)

    def wrapper(*args, as_json, paths, null, preview, **kwargs):
        chosen = [flag for flag, on in (("--json", as_json), ("--paths", paths), ("--null", null)) if on]
        if len(chosen) > 1:
            raise click.UsageError(f"{' and '.join(chosen)} are exclusive")
        output = chosen[0][2:] if chosen else "table"
        if output == "table" and preview != "none":
            output = f"table+{preview}"
        return command(*args, output=output, **kwargs)

    return functools.update_wrapper(wrapper, command)


@cli.command(epilog=EPILOG_SEARCH)
@click.argument("query", nargs=-1, required=True)
@limit_option()
@threshold_option()
@where_option()
@click.option("--sort", type=click.Choice(["score", "date", "newest"]), default="score", show_default=True,
              help="Order of the hits: by score, or the relevant hits by date taken (oldest or newest first; "
                   "images without a date last; the table then shows the date).")
@click.option("--no-keywords", is_flag=True, help="Rank by vectors only (no keyword match on names, descriptions, "
              "tags).")
@click.option("--keyword-weight", type=click.FloatRange(0), metavar="W",
              help="Weight of keyword matches in the fused ranking (default: the keyword_weight setting, 0.5).")
@click.option("--soft-tags", is_flag=True, help="tag:X terms rank like words instead of filtering.")
@click.option("--adaptive", type=click.FloatRange(0, 1, min_open=True), is_flag=False, flag_value=0.5,
              metavar="[RATIO]", help="Drop hits whose score is closer to a typical image's than to the best "
                                      "hit's (RATIO 0.5; higher keeps fewer).")
@click.option("--rerank", metavar="NAME", help="Re-rank the top hits with an image-text matching model "
              "(blip: the library's own BLIP model, else blip-itm-base; blip-itm-large, ...; see docs/models.md).")
@click.option("--rerank-top", default=50, show_default=True, type=click.IntRange(1, 1000),
              help="How many of the top hits --rerank scores.")
@click.option("--exact", is_flag=True, help="Score every image, also in a library big enough for the approximate "
              "index (the ann_threshold setting; docs/query.md).")
@click.option("--here", is_flag=True, help="First index the current folder into the library (incrementally: only "
              "new, changed, moved or deleted files cost anything), then search only the images below it.")
@hit_output
@model_option("Must match the library's model (it is read from the library; with --here: the model of a new one).")
@click.pass_context
def search(ctx, query, limit, threshold, where, sort, no_keywords, keyword_weight, soft_tags, adaptive, rerank,
           rerank_top, exact, here, output, model):
    """Search by words, example images (file, URL, id:N), tags, or a mix: + adds, - pushes away, N: weights.

    The words of QUERY are joined with spaces and parsed as one query (docs/query.md). With --here, as rclip does,
    the current folder is indexed first (into --library, else the default library) and searched alone.
    """
    _one_query_thread()
    if no_keywords and keyword_weight:
        raise click.UsageError("--no-keywords and --keyword-weight are exclusive")
    lib = _open(ctx, model, create=here)
    if here:
        where = (*where, "folder=./")
        _index_here(ctx, lib, output != "table")
    keywords = False if no_keywords else True if keyword_weight is None else keyword_weight
    hits = lib.search(SearchRequest(" ".join(query), limit=limit, threshold=threshold, where=where, sort=sort,
                                    keywords=keywords, soft_tags=soft_tags, rerank=rerank, rerank_top=rerank_top,
                                    adaptive=adaptive, exact=exact))
    echo_hits(hits, output, "No results" + (f" at or above threshold {threshold}" if threshold is not None
                                            else "") + ".", dates=sort in ("date", "newest"))


def _index_here(ctx, lib, machine_output: bool) -> None:
    """`search --here`: an incremental index run of the current folder, its progress and a summary on stderr when
    it changed something (stdout keeps only the hits)."""
    here = os.getcwd()
    with Progress.for_command(ctx, machine_output) as shown_progress:
        def progress(p) -> None:
            if p.phase == "embed" and p.total:
                shown_progress.update(p.done, p.total, "indexing", errors=p.errors)

        r = lib.index([here], progress=progress)
    if (r.embedded or r.moved or r.removed) and not ctx.find_root().obj["quiet"]:
        click.echo(f"picseek: indexed {shown(here)}: {r.added} added, {r.updated} updated, {r.moved} moved, "
                   f"{r.removed} removed ({r.seconds:.1f} s)", err=True)


def echo_hits(hits, output: str = "table", empty: str = "No results.", dates: bool = False) -> None:
    """Print hits as JSON, bare paths (escaped, or raw and NUL-ended), or a table of rank, score, via (which
    ranking found the hit), the date taken (`dates`: when sorted by date) and path, with description,
    photographer and tags under it when present. No hits ends the command with status 1 (nothing found), after
    "No results" (or `[]` with --json); filters that matched no image (`hits.note`) say why on stderr."""
    if not hits and getattr(hits, "note", None):
        fail(shown(hits.note), NOTHING_FOUND, prefix="no match: ")
    if output == "json":
        click.echo(json.dumps([h.as_dict() for h in hits], indent=None))  # (ASCII: \udcXX keeps every byte)
    elif output == "paths":
        for h in hits:
            click.echo(shown(h.path))
    elif output == "null":
        for h in hits:
            click.echo(raw_bytes(h.path) + b"\0", nl=False)
    elif not hits:
        click.echo(empty)
    else:
        drawn = preview.choose(output.partition("+")[2] or "none", getattr(sys.stdout, "buffer", sys.stdout))
        via = max(3, *(len(h.via or "") for h in hits))
        date = f"  {'taken':<{DATE_WIDTH}}" if dates else ""
        click.echo(f"{'rank':>4}  {'score':>6}  {'via':<{via}}{date}  path")
        for rank, h in enumerate(hits, 1):
            date = f"  {_date(h.taken_at):<{DATE_WIDTH}}" if dates else ""
            click.echo(f"{rank:>4}  {h.score:6.3f}  {h.via or '-':<{via}}{date}  {shown(h.source or h.path)}")
            about = _about(h)
            if about:  # under the path
                click.echo(f"{'':{16 + via + (DATE_WIDTH + 2 if dates else 0)}}{about}")
            if drawn != "none":
                _draw(h, drawn)
    if not hits:
        nothing_found()


DATE_WIDTH = 16  # YYYY-MM-DD HH:MM


def _draw(hit, protocol: str) -> None:
    """A hit's thumbnail under its row (an image that cannot be read is left out; its row says where it is)."""
    try:
        image = hit.thumbnail(preview.SIZE)
    except ImageError:
        return
    # bytes: click writes them to the terminal as they are (text goes through paths.terminal_safe, which would
    # escape the escape codes), after flushing the rows above
    click.echo(preview.render(image, protocol).encode("ascii"), nl=False)


def _date(taken_at: str | None) -> str:
    """The date taken as the table shows it (local time of the photo, to the minute); "-" when unknown."""
    return taken_at[:DATE_WIDTH].replace("T", " ") if taken_at else "-"


def _about(hit) -> str:
    desc = " ".join(str(hit.fields.get("description") or hit.fields.get("title") or "").split())
    parts = [desc[:90] + ("..." if len(desc) > 90 else "")] if desc else []
    if hit.fields.get("photographer"):
        parts.append(f"by {hit.fields['photographer']}")
    if hit.tags:
        parts.append(" ".join(f"#{t['tag']}" for t in hit.tags[:6]))
    if hit.matched_text:
        text = " / ".join(" ".join(line.split()) for line in hit.matched_text)
        parts.append(f"text: {text[:90]}" + ("..." if len(text) > 90 else ""))
    return "  ".join(parts)


@cli.command()
@click.option("--errors", "show_errors", is_flag=True, help="List the files that could not be indexed, and why.")
@json_option()
@click.pass_context
def status(ctx, show_errors, as_json):
    """Show the library: where it is, its model, how many images and errors, the last index run."""
    lib = _open(ctx)
    info = lib.status()
    if show_errors:
        info["error_list"] = lib.errors()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"library:  {info['library']}")
    if info.get("store", "built-in") != "built-in":
        click.echo(f"store:    {info['store']}")
    if info["model"]:
        click.echo(f"model:    {info['model']} ({info['model_id']}, {info['dim']}-d)")
        if image := info.get("image_model"):
            click.echo(f"images by example: {image['name']} ({image['model_id']}, {image['dim']}-d, space "
                       f"{image['space']})")
    else:  # no index run got as far as embedding (none yet, or the first one failed: a model not downloadable)
        click.echo(f"model:    none yet (chosen by the first index run that embeds images: "
                   f"{lib.command('index FOLDER')})")
    click.echo(f"images:   {info['images']}")
    if info.get("ocr"):
        click.echo("text:     read in every image (OCR; index --no-ocr stops it)")
    click.echo(f"errors:   {info['errors']}" + ("" if show_errors or not info["errors"] else
                                                 "  (picseek status --errors lists them)"))
    if info["disk_bytes"] or info.get("store", "built-in") == "built-in":  # (a ChromaDB server keeps its own disk)
        per_image = f" ({info['bytes_per_image']:,} bytes per image)" if info.get("bytes_per_image") else ""
        click.echo(f"size:     {info['disk_bytes'] / 1e6:.1f} MB on disk{per_image}")
    run = info["last_run"]
    if run:
        import datetime as dt

        when = dt.datetime.fromtimestamp(run["started_at"]).isoformat(sep=" ", timespec="seconds")
        stats = run.get("stats") or {}
        click.echo(f"last run: {when}, {run['status']}, {', '.join(map(shown, run['roots']))}; "
                   f"{stats.get('embedded', 0)} embedded, {stats.get('errors', 0)} errors, "
                   f"{stats.get('seconds', 0):.1f} s")
    for e in info.get("error_list", []):
        click.echo(f"  {shown(e['path'])}: {shown(e['reason'])}")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.pass_context
def remove(ctx, paths):
    """Forget the images at or below PATHS (folders or files, which may be gone already).

    Files on disk are never touched; index the folder again to bring them back.
    """
    lib = _open(ctx)
    n = lib.remove(paths)
    click.echo(f"Removed {n} images from {lib.path}.")
    if not n:
        nothing_found()


@cli.command()
@json_option()
def models(as_json):
    """List the models picseek knows and whether each is available offline (any hub repo or folder works too)."""
    from ..models.registry import list_models

    rows = list_models()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(r["name"]) for r in rows)
    click.echo(f"{'name':<{width}} {'offline':<8} {'dim':>4} {'size':>8}  {'needs':<7} description")
    for r in rows:
        size = f"{r['size_mb']} MB" if r.get("size_mb") else ""
        needs = f"[{r['extra']}]" if r["extra"] else ""
        click.echo(f"{r['name']:<{width}} {'yes' if r['available_offline'] else 'no':<8} {r['dim'] or '?':>4} "
                   f"{size:>8}  {needs:<7} {r['description']}")
    click.echo("\nAlso: hf:ORG/NAME (any CLIP/SigLIP on the Hugging Face hub), onnx:ORG/NAME (ready ONNX towers in "
               "immich's layout) or a local model folder; the older NAME-onnx names still mean NAME. Default: auto "
               "(a cached CLIP, else download one, else builtin).")



"""Vectors in and out and batch queries: `picseek import-embeddings`, `picseek export`, `picseek mine`."""
from __future__ import annotations

import json

import click

from ..paths import shown
from .group import _open, cli
from .options import json_option, model_option, where_option
from .progress import Progress

EPILOG_IMPORT = """\b
Examples:
  picseek -L ~/unsplash import-embeddings features.npy --ids photo_ids.csv --model clip-vit-b-32
  picseek -L ~/laion import-embeddings ./clip-retrieval-out --model clip-vit-b-32   # img_emb/ + metadata/
  picseek -L ~/copy import-embeddings export.parquet --model clip-vit-b-32
Safe to interrupt: run the same command again to finish (rows already in are skipped). See docs/embeddings.md.
"""
EPILOG_EXPORT = """\b
Examples:
  picseek export --format clip-retrieval ./out          # out/img_emb/img_emb_0.npy + out/metadata/metadata_0.parquet
  picseek export --format parquet --dtype float16 vectors.parquet
"""
EPILOG_MINE = """\b
Examples:
  picseek mine queries.txt --top 100 --out hits.parquet
  picseek mine prompts.csv --column prompt --top 50 --rerank blip-itm-base --out hits.csv
  picseek mine queries.txt --where taken>=2020 --tag beach --out hits.jsonl
  picseek mine queries.txt --rerank blip-itm-base --engine spark --master local[4] --out hits.parquet
"""


@cli.command("import-embeddings", epilog=EPILOG_IMPORT)
@click.argument("source", type=click.Path(exists=True))
@model_option("The model that made the vectors (required for a new library; checked against an existing one).")
@click.option("--format", "fmt", type=click.Choice(["clip-retrieval", "npy", "parquet"]),
              help="The source's layout (default: detected).")
@click.option("--ids", type=click.Path(exists=True, dir_okay=False),
              help="For an .npy: the file of ids or paths, one per vector (default: found beside it, e.g. "
                   "photo_ids.csv).")
@click.option("--column", metavar="COL", help="The column that names each image (default: image_path, path, url, "
                                              "photo_id, id, ...).")
@click.option("--vector-column", metavar="COL", help="For Parquet: the vector column (default: vector, embedding, "
                                                     "... or the first list-of-floats column).")
@click.option("--base", type=click.Path(file_okay=False),
              help="Folder that relative paths start from (default: the source's folder).")
@click.option("--no-hash", "no_hash", is_flag=True,
              help="Do not read local files to hash them (faster; a moved file is then re-embedded).")
@json_option("Print the report as JSON.")
@click.pass_context
def import_embeddings(ctx, source, model, fmt, ids, column, vector_column, base, no_hash, as_json):
    """Bring in vectors made elsewhere from SOURCE, without embedding anything.

    SOURCE: clip-retrieval's output folder (img_emb/ + metadata/), an .npy with an id or path list, or Parquet with a
    vector column (what `picseek export` writes). Rows that name a file here become that file (a later index of
    its folder embeds nothing); others are kept under their URL or COLUMN:VALUE. Other columns become fields.
    """
    lib = _open(ctx, create=True)
    with Progress.for_command(ctx, as_json) as progress:
        report = lib.import_embeddings(source, model=model, format=fmt, ids=ids, column=column,
                                       vector_column=vector_column, base=base, hash_files=not no_hash,
                                       progress=lambda p: progress.update(p.rows, p.total or 0, "importing",
                                                                          unit="vec", leave=False))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    click.echo(f"Imported {report.rows} vectors ({report.format}, {report.model}) into {lib.path} in "
               f"{report.seconds:.1f} s: {report.added} added, {report.updated} updated, {report.unchanged} already "
               f"there; {report.local} local files, {report.urls} URLs, {report.ids} ids "
               f"(joined by {report.column!r}); {report.fields_written} fields, {report.tags_written} tags")
    if report.bad_vectors:
        click.echo(f"  skipped {report.bad_vectors} rows whose vector is NaN, infinite or zero (e.g. "
                   f"{', '.join(report.bad_examples)})", err=True)
    if report.no_key:
        click.echo(f"  skipped {report.no_key} rows with an empty {report.column!r}", err=True)


@cli.command("export", epilog=EPILOG_EXPORT)
@click.argument("out", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["clip-retrieval", "parquet"]), default="parquet",
              show_default=True, help="clip-retrieval: a folder of img_emb/*.npy + metadata/*.parquet; parquet: one "
                                      "file with path, id, model, vector and the fields.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="The vectors' number type.")
@json_option("Print the report as JSON.")
@click.pass_context
def export(ctx, out, fmt, dtype, as_json):
    """Write the library's vectors, paths and fields to OUT (a new file or folder)."""
    lib = _open(ctx)
    report = lib.export_embeddings(out, format=fmt, dtype=dtype)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    click.echo(f"Exported {report.rows} vectors ({report.model}, {dtype}) to {shown(report.out)} ({fmt}, "
               f"{len(report.files)} files) in {report.seconds:.1f} s")


@cli.command("mine", epilog=EPILOG_MINE)
@click.argument("queries", type=click.Path(exists=True, dir_okay=False))
@click.option("--top", "-k", default=50, show_default=True, type=click.IntRange(1, 100000),
              help="Images per query.")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="Where the hits go: .parquet, .csv or .jsonl (columns query, rank, image_id, path, score, "
                   "rerank_score).")
@click.option("--column", metavar="COL", help="For a table of queries: the column (default: query, text, caption, "
                                              "prompt).")
@click.option("--rerank", metavar="NAME", help="Re-score each query's top images with an image-text matching "
                                               "model (blip-itm-base, blip-itm-large, hf:ORG/NAME or a folder).")
@where_option()
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Only images with this tag (repeatable).")
@click.option("--engine", type=click.Choice(["local", "spark"]), default="local", show_default=True,
              help="Where the re-ranker runs: here, or on Spark (the candidates always come from this machine).")
@click.option("--master", metavar="URL", help="With --engine spark: the Spark master (local[4], spark://HOST:7077, "
                                              "yarn; default: spark-submit's).")
@json_option("Print the report as JSON.")
@click.pass_context
def mine(ctx, queries, top, out, column, rerank, where, tags, engine, master, as_json):
    """Run every query of QUERIES (a text file, one per line, or a CSV/JSON/Parquet column) against the library and
    write each query's best images to --out."""
    lib = _open(ctx)
    if engine == "spark":
        from ..scale.spark import mine_on_spark

        _, report = mine_on_spark(master, lib, queries, top=top, where=where, tags=tags, rerank=rerank,
                                  column=column, out=out)
    else:
        if master:
            raise click.UsageError("--master goes with --engine spark")
        _, report = lib.mine(queries, top=top, where=where, tags=tags, rerank=rerank, column=column, out=out)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    d = report.as_dict()
    click.echo(f"Mined {report.queries} queries x {report.images} images (top {report.top}"
               f"{', re-ranked by ' + report.rerank if report.rerank else ''}) in {d['seconds']:.1f} s "
               f"({d['queries_per_s']} queries/s): {report.rows} rows to {shown(report.out or out)}")
    if report.unreadable:
        click.echo(f"  {report.unreadable} candidates could not be read for re-ranking (rerank_score empty)",
                   err=True)

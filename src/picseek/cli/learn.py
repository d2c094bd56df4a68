"""Beyond search: classify (zero-shot), train (contrastive CLIP training), eval (retrieval metrics)."""
from __future__ import annotations

import json
import sys

import click

from ..errors import USAGE
from ..paths import shown
from .group import _open, cli
from .options import json_option, model_option
from .progress import Progress

EPILOG_CLASSIFY = """\b
Examples:
  picseek classify cat.jpg car.jpg --labels "cat,dog,car"
  picseek classify ./shots/*.jpg --labels-file labels.txt --top 1 --json
  picseek classify img.jpg --labels "cat,dog" --template "a photo of a {label}." --template "a drawing of a {label}."
  picseek classify --all --labels-file labels.txt --store-tags --min-score 0.3   # then: search tag:cat
"""
EPILOG_TRAIN = """\b
Examples:
  picseek train --data captions.csv --out models/mine --from clip-vit-b-32-hf --epochs 3
  picseek train --data photos_by_class/ --out models/mine --from clip-vit-b-32-hf --train projection
  picseek train --data captions.csv --out models/tiny --arch tiny --epochs 20
  picseek train --data captions.csv --out models/tiny --arch tiny --epochs 30 --resume   # continue
  picseek -L ~/lib train --data library:description --out models/mine --from clip-vit-b-32-hf
  picseek index ~/Pictures --model models/mine
"""
EPILOG_EVAL = """\b
Examples:
  picseek eval --data captions.csv --model builtin --model clip-vit-b-32
  picseek eval --data dataset_coco.json --images ~/coco --model models/mine --json
  picseek eval --data photos_by_class/ --model clip-vit-b-32 --model models/mine
"""


def _labels(labels: str | None, labels_file: str | None) -> list[str]:
    from ..learn.classify import parse_labels
    from ..learn.zeroshot import read_labels

    if bool(labels) == bool(labels_file):
        raise click.UsageError("give --labels 'a,b,c' or --labels-file FILE (one of them)")
    return parse_labels(labels) if labels else read_labels(labels_file)


@cli.command(epilog=EPILOG_CLASSIFY)
@click.argument("images", nargs=-1, type=click.Path())
@click.option("--labels", metavar="A,B,C", help="The labels to choose between, comma-separated.")
@click.option("--labels-file", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="The labels, one per line (# comments and blank lines skipped).")
@click.option("--template", "templates", multiple=True, metavar="TEXT", help="A prompt with {label} (repeatable; "
              "the prompts' vectors are averaged). Default: four 'a photo of a {label}.' variants.")
@model_option("Model for IMAGES (default: the library's model with -L, else auto).")
@click.option("--top", "-k", default=3, show_default=True, type=click.IntRange(1, 1000),
              help="Labels shown per image.")
@click.option("--all", "use_library", is_flag=True, help="Classify every image of the library (--library PATH or "
              "the default one) instead of IMAGES, from its stored vectors.")
@click.option("--store-tags", is_flag=True, help="With --all: tag each image with the labels whose "
              "probability is at least --min-score (source 'classify'); search them with tag:NAME.")
@click.option("--min-score", default=0.3, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Least probability for a stored tag.")
@json_option("Print the predictions as JSON.")
@click.pass_context
def classify(ctx, images, labels, labels_file, templates, model, top, use_library, store_tags, min_score, as_json):
    """Zero-shot classification: each image's most probable labels (softmax over the labels, CLIP's recipe).

    Works with every model, the built-in one included. The labels compete: name every class that can occur.
    """
    from ..learn import classify as clf

    names = _labels(labels, labels_file)
    templates = templates or clf.DEFAULT_TEMPLATES
    if use_library == bool(images):
        raise click.UsageError("give IMAGE files, or --all to classify the whole library (not both)")
    if store_tags and not use_library:
        raise click.UsageError("--store-tags needs --all")
    with Progress.for_command(ctx, as_json) as progress:
        update = progress.callback("classifying")
        if use_library:
            report, preds = clf.classify_library(_open(ctx, model), names, templates=templates, top=top,
                                                 store_tags=store_tags, min_score=min_score, progress=update)
        else:
            clf.load_images_ok(list(images))
            report, preds = None, clf.classify_images(_embedder(ctx, model), list(images), names,
                                                      templates=templates, top=top, progress=update)
    _echo_predictions(preds, report, as_json)
    if any(p.error for p in preds):
        sys.exit(USAGE)  # (an image that could not be read: an input error, as a missing file is)


def _embedder(ctx, model: str | None):
    from .. import config
    from ..models.registry import load_embedder

    if model is None and ctx.obj["library"]:
        return _open(ctx).embedder()
    return load_embedder(config.get("model", model))


def _echo_predictions(preds, report, as_json: bool) -> None:
    if as_json:
        out = {"predictions": [p.as_dict() for p in preds]}
        if report is not None:
            out["report"] = report.as_dict()
        click.echo(json.dumps(out, indent=2))
        return
    for p in preds:
        if p.error:
            click.echo(f"{shown(p.path)}: error: {shown(p.error)}", err=True)
            continue
        best = ", ".join(f"{label} {prob:.3f}" for label, prob in p.labels)
        click.echo(f"{shown(p.path)}: {best}")
    if report is not None and report.min_score is not None:
        click.echo(f"Tagged {report.tags} (image, label) pairs with probability >= {report.min_score:g} "
                   "(source 'classify'); search them with tag:LABEL.")


@cli.command(epilog=EPILOG_TRAIN)
@click.option("--data", required=True, metavar="PATH", help="A folder of class sub-folders, a CSV/TSV/JSON/JSON Lines/"
              "Parquet file of image + caption (or a Karpathy split file), or library:FIELD (the -L library's field "
              "as captions, e.g. library:description).")
@click.option("--out", required=True, type=click.Path(file_okay=False), metavar="FOLDER",
              help="Where the model folder (and its checkpoint) is written; use it with --model FOLDER.")
@click.option("--from", "from_model", metavar="MODEL", help="Fine-tune this CLIP model, one in Hugging Face "
              "format (torch): clip-vit-b-32-hf, hf:ORG/NAME or a folder.")
@click.option("--arch", type=click.Choice(["tiny"]), help="Train a small CLIP from scratch instead.")
@click.option("--train", "train_mode", type=click.Choice(["all", "projection"]), default="all", show_default=True,
              help="Fine-tune every weight, or only the projection layers (and temperature).")
@click.option("--freeze-layers", default=0, show_default=True, type=click.IntRange(0), metavar="N",
              help="Keep the embeddings and lowest N layers of both towers frozen while fine-tuning.")
@click.option("--epochs", default=5, show_default=True, type=click.IntRange(1), help="Passes over the training set.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(2), help="Pairs per step.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), help="Learning rate (default: 5e-4 --arch tiny, "
              "1e-5 fine-tuning all, 1e-3 projection only).")
@click.option("--holdout", default=0.1, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="Share of images held out and scored each epoch (text->image recall@K).")
@click.option("--image-size", default=64, show_default=True, type=click.IntRange(16), help="Input size of "
              "--arch tiny (a multiple of 8).")
@click.option("--template", default="a photo of a {class}", show_default=True,
              help="Caption of an image in a class folder.")
@click.option("--images", "image_root", type=click.Path(file_okay=False), metavar="DIR",
              help="Folder that relative image paths in --data start from (default: the data file's folder).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="bf16 autocast needs a CPU with native bf16; auto uses it only where it measures faster.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for the split, shuffling and init.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt after its last epoch.")
@json_option("Print the training report as JSON.")
@click.pass_context
def train(ctx, data, out, from_model, arch, train_mode, freeze_layers, epochs, batch_size, lr, holdout, image_size,
          template, image_root, precision, seed, resume, as_json):
    """Contrastive (CLIP) training on image + caption pairs; writes a model folder that --model loads.

    Fine-tune a CLIP model (--from) or train a tiny one from scratch (--arch tiny). Each epoch scores a held-out
    split and writes a checkpoint; --resume continues.
    """
    from ..learn.data import LIBRARY_PREFIX, load_dataset
    from ..learn.train import TrainOptions
    from ..learn.train import train as run_train

    lib = _open(ctx) if data.startswith(LIBRARY_PREFIX) else None
    ds = load_dataset(data, template=template, image_root=image_root, library=lib)
    opts = TrainOptions(out=out, from_model=from_model, arch=arch, train=train_mode, freeze_layers=freeze_layers,
                        epochs=epochs, batch_size=batch_size, lr=lr, holdout=holdout, seed=seed,
                        image_size=image_size, precision=precision, resume=resume)
    with Progress.for_command(ctx, as_json) as progress:
        report = run_train(ds, opts, _train_progress(progress))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    for line in report.skipped:
        click.echo(f"skipped: {line}", err=True)
    last = report.epochs[-1] if report.epochs else None
    held = ", ".join(f"{k} {v:g}" for k, v in (last.held_out if last else {}).items())
    click.echo(f"Trained on {report.train_images} images ({report.held_out_images} held out, {report.precision}); "
               f"model folder: {report.out}" + (f"\nheld-out after epoch {last.epoch}: {held}" if held else ""))


def _train_progress(progress: Progress):
    """A transient stage per epoch with the running loss; one line per epoch with the held-out scores."""

    def update(event) -> None:
        if hasattr(event, "held_out"):
            progress.finish()
            held = ", ".join(f"{k} {v:g}" for k, v in event.held_out.items())
            progress.note(f"epoch {event.epoch}: loss {event.loss:.4f}  held-out: {held or '-'}")
            return
        progress.update(event.step, event.steps, f"epoch {event.epoch}/{event.epochs}", unit="step", leave=False,
                        loss=f"{event.loss:.4f}")

    return update


@cli.command("eval", epilog=EPILOG_EVAL)
@click.option("--data", required=True, metavar="PATH", help="A CSV/JSON of image + caption, a Karpathy split file "
              "(several captions per image), or a folder of class sub-folders (zero-shot accuracy).")
@click.option("--model", "-m", "models", multiple=True, required=True, help="A model to score (repeatable: "
              "compared side by side).")
@click.option("--images", "image_root", type=click.Path(file_okay=False), metavar="DIR",
              help="Folder that relative image paths start from (default: the data file's folder).")
@click.option("--split", "split_name", metavar="NAME", help="Only rows of this split (Karpathy files: default test "
              "where there is one).")
@click.option("--template", "templates", multiple=True, metavar="TEXT", help="Prompt with {label} for class "
              "folders (repeatable; averaged). Default: the classify templates.")
@json_option("Print the results as JSON.")
@click.pass_context
def eval_cmd(ctx, data, models, image_root, split_name, templates, as_json):
    """Score models on your own data: text->image and image->text recall@1/5/10 and mean rank, or zero-shot
    top-1/top-5 accuracy for class folders."""
    from ..learn.classify import DEFAULT_TEMPLATES
    from ..learn.data import load_dataset
    from ..learn.evaluate import evaluate
    from ..models.registry import load_embedder

    ds = load_dataset(data, image_root=image_root, split_name=split_name)
    results = []
    for name in models:
        with Progress.for_command(ctx, as_json) as progress:
            results.append(evaluate(load_embedder(name), ds, templates=templates or DEFAULT_TEMPLATES,
                                    progress=progress.callback(f"embedding ({name})")))
    if as_json:
        click.echo(json.dumps({"data": data, "results": results}, indent=2))
        return
    _echo_table(results)


def _echo_table(results: list[dict]) -> None:
    first = results[0]
    keys = [("zero_shot", k) for k in first.get("zero_shot", {})] or \
        [(d, k) for d in ("text_to_image", "image_to_text") for k in first[d] if k != "median_rank"]
    names = [r["model"] for r in results]
    width = max(12, *(len(n) for n in names))
    what = f"{first['images']} images, " + (f"{first['classes']} classes" if "classes" in first else
                                            f"{first['captions']} captions")
    click.echo(what + (f" ({first['unreadable']} unreadable, skipped)" if first["unreadable"] else ""))
    click.echo(f"{'':22}" + "".join(f"{n:>{width + 2}}" for n in names))
    short = {"text_to_image": "text->image", "image_to_text": "image->text", "zero_shot": "zero-shot"}
    for group, key in keys:
        cells = "".join(f"{r[group][key]:>{width + 2}.3f}" for r in results)
        click.echo(f"{short[group] + ' ' + key:22}{cells}")

"""Contrastive (CLIP) training on image + caption pairs: fine-tune a CLIP model or train a tiny one from scratch.

The result is a Hugging Face CLIP folder (weights, config, image processor config, tokenizer), so `--model FOLDER`
loads it everywhere through the hf backend. Images go through `prepare_image` + `normalize` with the model's
`ImageSpec`, exactly as indexing does, so training and inference see the same pixels.

- Start: `from_model` (a registry name or folder of a CLIP model; `train="all"`, `"projection"` = only the two
  projection layers and the temperature, `freeze_layers=N` = the embeddings and the lowest N layers of both towers
  frozen), or `arch="tiny"` (a small CLIPConfig and a word-level tokenizer built from the training captions).
- Loss: CLIP's symmetric cross-entropy, with soft targets where a batch holds the same caption twice (class
  folders give every image of a class one caption): all matching pairs share the target mass.
- Each epoch: a held-out split is scored (text->image recall@K for captions, zero-shot accuracy for classes), and a
  checkpoint (model, optimizer, scheduler, epoch, random states) is written atomically to OUT/checkpoint.pt;
  `resume=True` continues after its epoch. The model folder is written at the start (config, tokenizer,
  processor) and completed (weights) at the end.
- Precision: float32, or bfloat16 autocast on CPUs with native bf16 (avx512_bf16/amx); "auto" times both on the
  first batch and keeps bf16 only if it is faster (on CPUs without native bf16 it is emulated and slower).
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .._fs import write_atomic
from ..errors import ImageError, UsageError, one_line
from ..extras import require
from ..ingest.images import load_image
from ..models.base import ImageSpec, normalize, prepare_image
from . import evaluate
from .clipmodel import (
    MAX_LOGIT_SCALE,
    TINY,
    build_tokenizer,
    clip_loss,
    cpu_has_bf16,
    features,
    save_processor,
    set_trainable,
    tiny_config,
)
from .data import CLASS_TEMPLATE, Dataset, split

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
HISTORY = "training.json"
TRAIN_MODES = ("all", "projection")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainOptions:
    out: str
    from_model: str | None = None  # a CLIP model to fine-tune; None with arch="tiny"
    arch: str | None = None  # "tiny": train from scratch
    train: str = "all"  # "all" or "projection"
    freeze_layers: int = 0
    epochs: int = 5
    batch_size: int = 32
    lr: float | None = None  # default: 5e-4 from scratch, 1e-5 fine-tuning all, 1e-3 projection only
    weight_decay: float = 0.1
    holdout: float = 0.1
    seed: int = 0
    image_size: int = 64  # tiny only
    precision: str = "auto"
    resume: bool = False
    ks: tuple[int, ...] = (1, 5, 10)


@dataclass
class Step:
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float


@dataclass
class EpochReport:
    epoch: int
    loss: float  # mean training loss
    held_out: dict  # {"t2i_r@1": ...} or {"top1": ...}
    seconds: float


@dataclass
class TrainReport:
    out: str
    train_images: int
    held_out_images: int
    precision: str
    epochs: list[EpochReport] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # unreadable images, one line each

    def as_dict(self) -> dict:
        return asdict(self)


def train(ds: Dataset, opts: TrainOptions, progress: Callable[[Step | EpochReport], None] | None = None
          ) -> TrainReport:
    """Train on `ds` and write the model folder `opts.out`; returns the per-epoch report."""
    require("training")
    import torch

    _check(opts)
    out = Path(opts.out).expanduser()
    ckpt = _load_checkpoint(out, opts) if opts.resume else None
    torch.manual_seed(opts.seed)
    model, tok, spec = _start(ds, opts, out, resume=ckpt is not None)
    train_ds, held = split(ds, opts.holdout, opts.seed)
    pix, train_ds, skipped = _decode(train_ds, spec)
    held_pix, held, skipped_held = _decode(held, spec)
    if len(train_ds) < 2:
        raise UsageError(f"{ds.source}: fewer than two readable training images")
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=_lr(opts), weight_decay=opts.weight_decay)
    steps = math.ceil(len(train_ds) / opts.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, _schedule(steps * opts.epochs))
    report = TrainReport(str(out), len(train_ds), len(held), "fp32", skipped=skipped + skipped_held)
    start_epoch = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optim.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        _set_rng(ckpt["rng"])
        start_epoch = ckpt["epoch"]
        report.epochs = [EpochReport(**e) for e in ckpt["history"]]
        report.precision = ckpt.get("precision", "fp32")
    texts = _Texts(tok, train_ds.captions)
    if ckpt is None:
        report.precision = _pick_precision(opts.precision, model, pix, spec, texts, train_ds)
    for epoch in range(start_epoch + 1, opts.epochs + 1):
        t0 = time.perf_counter()
        loss = _epoch(model, optim, sched, pix, train_ds, texts, spec, opts, epoch, report.precision, progress)
        held_metrics = held_out_metrics(model, tok, spec, held_pix, held, opts.ks)
        rep = EpochReport(epoch, round(loss, 6), held_metrics, round(time.perf_counter() - t0, 3))
        report.epochs.append(rep)
        _save_checkpoint(out, model, optim, sched, epoch, report, opts)
        log.info("epoch %d: loss %.4f held-out %s", epoch, loss, held_metrics)
        if progress:
            progress(rep)
    _save_weights(model, out)
    (out / HISTORY).write_text(json.dumps(report.as_dict(), indent=2), encoding="utf-8")
    return report


def _save_weights(model, out: Path) -> None:
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the CLI draws its own bar
    try:
        model.save_pretrained(out)
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


# ------------------------------------------------------------------------------------------------ start


def _check(opts: TrainOptions) -> None:
    if bool(opts.from_model) == bool(opts.arch) and not opts.resume:
        raise UsageError("give either --from MODEL (fine-tune) or --arch tiny (from scratch)")
    if opts.arch not in (None, "tiny"):
        raise UsageError(f"unknown --arch {opts.arch!r}: only 'tiny' is built in")
    if opts.train not in TRAIN_MODES:
        raise UsageError(f"--train must be one of {', '.join(TRAIN_MODES)}")
    if opts.precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}")
    if opts.precision == "bf16" and not cpu_has_bf16():
        raise UsageError("--precision bf16 needs a CPU with native bfloat16 (avx512_bf16 or amx); this one has "
                         "none (emulated bf16 is slower than float32)")
    if opts.epochs < 1 or opts.batch_size < 2 or opts.freeze_layers < 0:
        raise UsageError("--epochs must be >= 1, --batch-size >= 2 and --freeze-layers >= 0")
    if opts.arch and (opts.train != "all" or opts.freeze_layers):
        raise UsageError("--train projection and --freeze-layers apply to fine-tuning (--from), not --arch tiny")


def _start(ds: Dataset, opts: TrainOptions, out: Path, resume: bool):
    """(model, tokenizer, image spec): from the model folder being trained (resume), a CLIP to fine-tune, or new."""
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    from ..models import hf

    if resume:
        model = CLIPModel(CLIPConfig.from_pretrained(out))
        tok = AutoTokenizer.from_pretrained(out)
        spec, _ = hf.image_spec_from_processor(json.loads((out / "preprocessor_config.json").read_text()))
    elif opts.arch == "tiny":
        tok = build_tokenizer(ds.captions, TINY["max_text"])
        model, spec = CLIPModel(tiny_config(tok, opts.image_size)), ImageSpec(size=opts.image_size)
    else:
        model, tok, spec = _fine_tune_start(opts.from_model)
    set_trainable(model, opts.train, opts.freeze_layers)
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
        model.config.save_pretrained(out)
        tok.save_pretrained(out)
        save_processor(spec, out)
    model.train()
    return model, tok, spec


def _fine_tune_start(name: str):
    from ..models import registry

    spec = registry.resolve(name)
    if spec.backend != "hf":
        twin = f"{spec.name}-hf" if f"{spec.name}-hf" in registry.SPECS else None
        hint = f": use --from {twin} (the same weights in Hugging Face format, through torch)" if twin else ""
        raise UsageError(f"only CLIP models in Hugging Face format can be fine-tuned, not {name} "
                         f"({spec.backend}){hint}")
    emb = registry.load_embedder(spec, precision="fp32")  # training needs the torch weights
    if getattr(emb.model.config, "model_type", "") != "clip":
        raise UsageError(f"{name} is a {emb.model.config.model_type!r} model; fine-tuning supports CLIP models")
    return emb.model, emb.tokenizer, emb.image_spec


def _lr(opts: TrainOptions) -> float:
    if opts.lr is not None:
        return opts.lr
    return 5e-4 if opts.arch else 1e-3 if opts.train == "projection" else 1e-5


def _schedule(total: int):
    warm = max(1, min(100, total // 10))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return f


def _decode(ds: Dataset, spec: ImageSpec) -> tuple[np.ndarray, Dataset, list[str]]:
    """uint8 N x size x size x 3 of the readable images, the dataset narrowed to them, the unreadable ones."""
    pix, ok, bad = [], [], []
    for i, path in enumerate(ds.images):
        try:
            pix.append(prepare_image(load_image(path), spec))
            ok.append(i)
        except ImageError as exc:
            bad.append(str(exc))
    arr = np.stack(pix) if pix else np.zeros((0, spec.size, spec.size, 3), np.uint8)
    return arr, ds.subset(ok), bad


# ------------------------------------------------------------------------------------------------ steps


class _Texts:
    """Tokenised captions and an id per distinct caption (for soft targets)."""

    def __init__(self, tok, captions: list[str]):
        self.tok = tok
        self.captions = captions
        ids: dict[str, int] = {}
        self.caption_id = np.asarray([ids.setdefault(c, len(ids)) for c in captions], dtype=np.int64)

    def encode(self, idx: np.ndarray) -> dict:
        enc = self.tok([self.captions[j] for j in idx], padding="longest", truncation=True, return_tensors="pt",
                       max_length=min(77, self.tok.model_max_length))
        return {k: enc[k] for k in ("input_ids", "attention_mask") if k in enc}


def _batch(pix: np.ndarray, ds: Dataset, texts: _Texts, spec: ImageSpec, images: np.ndarray, rng):
    """Tensors for a batch of images, each with one of its captions picked at random."""
    import torch

    caps = [rng.choice(np.nonzero(ds.caption_image == i)[0]) for i in images]
    x = torch.from_numpy(normalize(pix[images], spec))
    return x, texts.encode(np.asarray(caps)), torch.from_numpy(texts.caption_id[caps])


def _autocast(precision: str):
    import contextlib

    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def _epoch(model, optim, sched, pix, ds: Dataset, texts: _Texts, spec, opts: TrainOptions, epoch: int,
           precision: str, progress) -> float:
    import torch

    model.train()
    rng = np.random.default_rng([opts.seed, epoch])
    order = rng.permutation(len(ds))
    batches = [order[i:i + opts.batch_size] for i in range(0, len(order), opts.batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:  # a batch of one has no negatives
        batches[-2] = np.concatenate(batches[-2:])
        batches.pop()
    losses = []
    for n, images in enumerate(batches, 1):
        x, text_inputs, cap_ids = _batch(pix, ds, texts, spec, images, rng)
        with _autocast(precision):
            loss = clip_loss(model, x, text_inputs, cap_ids)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optim.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        losses.append(float(loss.detach()))
        if progress:
            progress(Step(epoch, opts.epochs, n, len(batches), losses[-1]))
    return float(np.mean(losses))


def held_out_metrics(model, tok, spec: ImageSpec, pix: np.ndarray, ds: Dataset, ks=(1, 5, 10)) -> dict:
    """Text->image recall@K (captions) or zero-shot accuracy (classes) of the held-out images."""
    import torch
    import torch.nn.functional as F

    if len(ds) < 2:
        return {}
    model.eval()
    with torch.inference_mode():
        img = torch.cat([features(model.get_image_features(pixel_values=torch.from_numpy(
            normalize(pix[i:i + 64], spec)))) for i in range(0, len(pix), 64)])
        texts = ds.captions if ds.classes is None else [CLASS_TEMPLATE.replace("{class}", c) for c in ds.classes]
        t = _Texts(tok, texts)
        txt = torch.cat([features(model.get_text_features(**t.encode(np.arange(i, min(i + 256, len(texts))))))
                         for i in range(0, len(texts), 256)])
        sim = (F.normalize(txt.float(), dim=-1) @ F.normalize(img.float(), dim=-1).T).numpy()
    model.train()
    if ds.classes is not None:
        return evaluate.accuracy_metrics(sim.T, ds.labels)
    t2i = evaluate.recall_summary(evaluate.ranks_text_to_image(sim, ds.caption_image), ks)
    return {f"t2i_{k}": v for k, v in t2i.items()}


# ------------------------------------------------------------------------------------------- precision


def _pick_precision(asked: str, model, pix, spec, texts: _Texts, ds: Dataset) -> str:
    if asked != "auto":
        return asked
    if not cpu_has_bf16():
        return "fp32"
    rng = np.random.default_rng(0)
    images = np.arange(min(len(ds), 32))
    x, text_inputs, cap_ids = _batch(pix, ds, texts, spec, images, rng)
    timings = {}
    for precision in ("fp32", "bf16", "fp32", "bf16"):  # the first round warms up; the second is timed
        t0 = time.perf_counter()
        with _autocast(precision):
            loss = clip_loss(model, x, text_inputs, cap_ids)
        loss.backward()
        model.zero_grad(set_to_none=True)
        timings[precision] = time.perf_counter() - t0
    best = min(timings, key=timings.get)
    log.info("training step: fp32 %.3f s, bf16 %.3f s: using %s", timings["fp32"], timings["bf16"], best)
    return best


# ------------------------------------------------------------------------------------------- checkpoints


def _rng_state() -> dict:
    import torch

    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _fingerprint(opts: TrainOptions) -> dict:
    keep = ("from_model", "arch", "train", "freeze_layers", "batch_size", "holdout", "seed", "image_size")
    return {k: getattr(opts, k) for k in keep}


def _save_checkpoint(out: Path, model, optim, sched, epoch: int, report: TrainReport, opts: TrainOptions) -> None:
    import torch

    state = {"model": model.state_dict(), "optimizer": optim.state_dict(), "scheduler": sched.state_dict(),
             "epoch": epoch, "rng": _rng_state(), "options": _fingerprint(opts), "precision": report.precision,
             "history": [asdict(e) for e in report.epochs]}
    write_atomic(out / CHECKPOINT, lambda f: torch.save(state, f), fsync=False)


def _load_checkpoint(out: Path, opts: TrainOptions) -> dict | None:
    import torch

    path = out / CHECKPOINT
    if not path.is_file():
        if opts.from_model or opts.arch:
            log.warning("no checkpoint in %s: starting from the beginning", out)
            return None
        raise UsageError(f"nothing to resume: {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: one clear line
        raise UsageError(f"cannot read checkpoint {path}: {one_line(exc)}") from None
    saved = ckpt.get("options", {})
    asked = _fingerprint(opts)
    differ = [k for k in asked if k in saved and asked[k] != saved[k] and not (asked[k] is None and k in
                                                                                ("from_model", "arch"))]
    if differ:
        raise UsageError(f"--resume with other settings than the checkpoint ({', '.join(differ)}): use the same "
                         "options, or train into another --out")
    for k in ("from_model", "arch"):
        setattr(opts, k, saved.get(k))
    return ckpt

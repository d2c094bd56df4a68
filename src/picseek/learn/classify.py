"""Zero-shot classification: each image's probabilities over a list of labels (`picseek classify`).

CLIP's recipe: every label is written into each prompt template, the prompts' text vectors are averaged into one
vector per label (`zeroshot.class_weights`), and an image's probabilities are the softmax over the labels of its
cosine with each label vector times the model's logit scale (CLIP's learnt temperature, 100 for OpenAI CLIP;
models without one use `DEFAULT_SCALE`). Unlike `picseek tag --labels` (independent cosine scores per label),
probabilities compete: they sum to 1 over the labels given, so the list should name every class that can occur.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import ImageError, UsageError
from ..models.base import MAIN
from ..store.base import clean_tags
from . import zeroshot
from .evaluate import embed_images

log = logging.getLogger(__name__)

DEFAULT_TEMPLATES = ("a photo of a {label}.", "a photo of the {label}.", "a close-up photo of a {label}.",
                     "a good photo of a {label}.")
DEFAULT_SCALE = 100.0
MAX_SCALE = 100.0
SOURCE = "classify"
BLOCK = 4096


@dataclass
class Prediction:
    """One image's best labels, most probable first: [(label, probability), ...]; or the reason it failed."""

    path: str
    labels: list[tuple[str, float]] = field(default_factory=list)
    id: int | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["labels"] = [{"label": lab, "probability": p} for lab, p in self.labels]
        return d


@dataclass
class ClassifyReport:
    images: int
    labels: int
    tags: int = 0  # tags written (--store-tags)
    min_score: float | None = None
    per_label: dict[str, int] = field(default_factory=dict)  # images whose best label this is

    def as_dict(self) -> dict:
        return asdict(self)


def logit_scale(embedder) -> float:
    """The model's softmax temperature: exp(logit_scale) for CLIP-family models (capped at 100), else 100."""
    param = getattr(getattr(embedder, "model", None), "logit_scale", None)
    if param is None:
        return DEFAULT_SCALE
    try:
        return float(min(float(np.exp(float(param.detach().reshape(-1)[0]))), MAX_SCALE))
    except (AttributeError, TypeError, ValueError):
        return DEFAULT_SCALE


class Classifier:
    """Label vectors built once for a model, labels and templates; `probabilities` for any image vectors."""

    def __init__(self, embedder, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES):
        self.labels = clean_labels(labels)
        self.embedder = embedder
        self.weights = zeroshot.class_weights(embedder, self.labels, list(templates) or DEFAULT_TEMPLATES)
        self.scale = logit_scale(embedder)

    def probabilities(self, image_vectors: np.ndarray) -> np.ndarray:
        return zeroshot.softmax_probabilities(image_vectors, self.weights, self.scale)

    def top(self, probs: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        k = max(1, min(k, len(self.labels)))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.labels[c], round(float(p[c]), 6)) for c in row] for p, row in zip(probs, order)]


def clean_labels(labels: Sequence[str]) -> list[str]:
    out = list(dict.fromkeys(" ".join(str(x).split()) for x in labels if str(x).strip()))
    if len(out) < 2:
        raise UsageError("give at least two labels to classify between (--labels 'cat,dog' or --labels-file)")
    if len(out) > zeroshot.MAX_LABELS:
        raise UsageError(f"{len(out)} labels; at most {zeroshot.MAX_LABELS}")
    return out


def parse_labels(text: str) -> list[str]:
    """'cat, dog,car' -> ['cat', 'dog', 'car']."""
    return clean_labels(text.split(","))


def classify_images(embedder, images: Sequence, labels: Sequence[str], *,
                    templates: Sequence[str] = DEFAULT_TEMPLATES, top: int = 3,
                    progress: Callable[[int, int], None] | None = None, store=None,
                    max_pixels: int | None = None) -> list[Prediction]:
    """Images -> one Prediction each, in order; one that cannot be read gets `error` (never raises). An image is a
    file (a path), a PIL image (its Prediction has no path), or with `store` the id (an int) of an indexed image,
    classified from its stored vector. `max_pixels`: the decoding limit for files (None: load_image's default)."""
    clf = Classifier(embedder, labels, templates)
    images = list(images)
    ids = {n: int(x) for n, x in enumerate(images) if isinstance(x, (int, np.integer)) and not isinstance(x, bool)}
    if ids and store is None:
        raise UsageError("image ids need the library they belong to: Library.classify(ids, labels)")
    decoded = [n for n in range(len(images)) if n not in ids]
    out = [Prediction(_path_of(images[n])) for n in range(len(images))]
    vecs, ok, errors = embed_images(embedder, [images[n] for n in decoded], progress, max_pixels=max_pixels)
    for i, reason in zip([i for i in range(len(decoded)) if i not in set(ok)], errors):
        out[decoded[i]].error = reason
    rows = [decoded[i] for i in ok]
    if ids:
        found = store.get_images(list(ids.values()))
        for n, image_id in ids.items():
            out[n].id = image_id
            vec = store.vector_of(image_id, MAIN) if image_id in found else None
            if vec is None:
                out[n].error = f"{image_id} is not an indexed image"
                continue
            out[n].path = found[image_id]["path"]
            vecs = np.concatenate([vecs, np.asarray(vec, np.float32)[None]])
            rows.append(n)
    for n, best in zip(rows, clf.top(clf.probabilities(vecs), top) if rows else []):
        out[n].labels = best
    return out


def _path_of(image) -> str:
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else ""


def classify_library(library, labels: Sequence[str], *, templates: Sequence[str] = DEFAULT_TEMPLATES,
                     top: int = 3, store_tags: bool = False, min_score: float = 0.3,
                     progress: Callable[[int, int], None] | None = None) -> tuple[ClassifyReport, list[Prediction]]:
    """Classify every image of a library from its stored vectors. With `store_tags`, each label whose probability
    is at least `min_score` becomes a tag with source "classify" and the probability as its score (earlier
    "classify" tags of these labels are replaced; tags from another source are never touched)."""
    if not 0 < min_score <= 1:
        raise UsageError(f"--min-score must be in (0, 1], not {min_score}")
    clf = Classifier(library.embedder(), labels, templates)
    store = library.store
    ids, mat = store.vectors(MAIN)
    if not len(ids):
        raise UsageError(f"library {library.path} has no images yet: run picseek index FOLDER first")
    paths = {i: r["path"] for i, r in store.get_images([int(i) for i in ids]).items()}
    preds, rows = [], []
    report = ClassifyReport(len(ids), len(clf.labels), min_score=min_score if store_tags else None,
                            per_label=dict.fromkeys(clf.labels, 0))
    for start in range(0, len(ids), BLOCK):
        probs = clf.probabilities(mat[start:start + BLOCK])
        for image_id, p, best in zip(ids[start:start + BLOCK], probs, clf.top(probs, top)):
            preds.append(Prediction(paths.get(int(image_id), ""), best, int(image_id)))
            report.per_label[best[0][0]] += 1
            rows += [(int(image_id), clf.labels[c], round(float(p[c]), 6)) for c in np.nonzero(p >= min_score)[0]]
        if progress:
            progress(min(start + BLOCK, len(ids)), len(ids))
    if store_tags:
        report.tags = _store_tags(store, [int(i) for i in ids], clf.labels, rows)
    return report, preds


def classify_ids_to_tags(embedder, store, ids: Sequence[int], labels: Sequence[str], *,
                         templates: Sequence[str] = DEFAULT_TEMPLATES, top: int = 3,
                         min_score: float = 0.3) -> list[Prediction]:
    """Indexed images (ids) classified from their stored vectors, and each label whose probability reaches
    `min_score` stored as a tag with source "classify", as `classify_library` stores them (earlier classify tags of
    these labels on these images replaced). Returns the predictions (best `top` labels); an id that is not an
    indexed image gets `error`."""
    if not 0 < min_score <= 1:
        raise UsageError(f"--min-score must be in (0, 1], not {min_score}")
    clean = clean_labels(labels)
    preds = classify_images(embedder, [int(i) for i in ids], clean, templates=templates, top=len(clean),
                            store=store)
    ok = [p for p in preds if p.id is not None and not p.error]
    rows = [(p.id, lab, prob) for p in ok for lab, prob in p.labels if prob >= min_score]
    if ok:
        _store_tags(store, [p.id for p in ok], clean, rows)
    for p in preds:
        p.labels = p.labels[:max(1, top)]
    return preds


def _store_tags(store, ids: list[int], labels: list[str], rows: list[tuple[int, str, float]]) -> int:
    """Replace earlier classify tags of `labels`; skip a tag an image already has from another source."""
    names = set(clean_tags(labels))
    existing = store.get_tags(ids)
    stale: dict[str, list[int]] = {}
    keep_other = set()
    for image_id, tags in existing.items():
        for t in tags:
            if t["tag"] in names and t["source"] == SOURCE:
                stale.setdefault(t["tag"], []).append(image_id)
            elif t["tag"] in names:
                keep_other.add((image_id, t["tag"]))
    for tag, image_ids in stale.items():
        store.remove_tags(image_ids, [tag])
    new = [(i, lab.lower(), SOURCE, s) for i, lab, s in rows if (i, " ".join(lab.split()).lower()) not in keep_other]
    return store.add_tags(new)


def load_images_ok(paths: Sequence[str]) -> None:
    """Fail fast when none of the given files exists (a typo), before loading a model."""
    missing = [p for p in paths if not os.path.exists(p)]
    if missing and len(missing) == len(paths):
        raise ImageError(f"no such file: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1
                                                          else ""))

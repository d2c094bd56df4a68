"""Zero-shot label scores: how well each image matches each label, from the model's own text and image vectors.

A label becomes a prompt ("a photo of {label}"), the prompt a text vector in the model's shared space, and an
image's score for the label is the cosine similarity of the two (the image's stored "main" vector). Scores are
independent per label, so an image can carry several tags and adding a label never changes another label's
tags. `benchmarks/zeroshot_tags.py` compared this with a softmax over the labels (temperatures 0.01-0.1) on the
built-in model and 17 scikit-image sample photos x 28 labels: raw cosine ranked the (photo, label) pairs best
(average precision 0.43 against at most 0.39), had the best F1 (0.48, at 0.445), and at the default threshold
0.45 its tags were 83 % precise (recall 0.28: the built-in model knows ImageNet's concepts only); with a softmax,
3-20 tags changed when the labels that no photo shows were dropped from the list.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..errors import UsageError
from ..models.base import l2_normalize

DEFAULT_TEMPLATE = "a photo of {label}"
# Measured default thresholds per model (cosine similarity); other models need an explicit threshold.
DEFAULT_THRESHOLDS = {"builtin": 0.45}
MAX_LABELS = 10_000


def read_labels(path: str | os.PathLike) -> list[str]:
    """One label per line; blank lines and lines starting with # are skipped; duplicates dropped."""
    try:
        text = open(os.fspath(path), encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read labels file {path}: {exc}") from exc
    labels = list(dict.fromkeys(" ".join(line.split()) for line in text.splitlines()
                                if line.strip() and not line.lstrip().startswith("#")))
    if not labels:
        raise UsageError(f"labels file {path} has no labels (one per line)")
    if len(labels) > MAX_LABELS:
        raise UsageError(f"labels file {path} has {len(labels)} labels; at most {MAX_LABELS}")
    return labels


def prompts(labels: Sequence[str], template: str = DEFAULT_TEMPLATE) -> list[str]:
    if "{label}" not in template:
        raise UsageError(f"prompt template {template!r} must contain {{label}}")
    return [template.replace("{label}", label) for label in labels]


def label_vectors(embedder, labels: Sequence[str], template: str = DEFAULT_TEMPLATE) -> np.ndarray:
    """L x dim unit vectors of the labels' prompts in the model's shared space."""
    return l2_normalize(embedder.embed_texts(prompts(labels, template)))


def label_scores(image_vectors: np.ndarray, label_vecs: np.ndarray) -> np.ndarray:
    """N x L scores: cosine similarity of each image's main vector with each label's prompt vector."""
    return np.asarray(image_vectors, dtype=np.float32) @ np.asarray(label_vecs, dtype=np.float32).T


def default_threshold(model_name: str | None) -> float:
    if model_name in DEFAULT_THRESHOLDS:
        return DEFAULT_THRESHOLDS[model_name]
    raise UsageError(f"no measured tag threshold for model {model_name}: give one (--threshold, a cosine "
                     f"similarity; see the scores of picseek search \"a photo of LABEL\" --json)")


def class_weights(embedder, labels: Sequence[str], templates: Sequence[str] = (DEFAULT_TEMPLATE,)) -> np.ndarray:
    """L x dim unit vectors for classification, CLIP's zero-shot recipe: each label's prompts under every
    template are embedded, normalised, averaged, and the average normalised again (prompt ensembling)."""
    if not templates:
        raise UsageError("give at least one prompt template")
    if not labels:
        raise UsageError("give at least one label")
    texts = [p for t in templates for p in prompts(labels, t)]  # template-major: T blocks of L prompts
    vecs = l2_normalize(embedder.embed_texts(texts)).reshape(len(templates), len(labels), -1)
    return l2_normalize(vecs.mean(axis=0))


def softmax_probabilities(image_vectors: np.ndarray, weights: np.ndarray, scale: float) -> np.ndarray:
    """N x L probabilities: softmax over the labels of `scale` x cosine (scale: the model's logit scale)."""
    logits = label_scores(image_vectors, weights).astype(np.float64) * scale
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

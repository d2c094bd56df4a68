"""How to score zero-shot tags: raw cosine against a softmax over the labels, on the built-in model and the
photos that ship with scikit-image. Prints the figures behind `picseek.learn.zeroshot` (nothing is asserted).

    HF_HUB_OFFLINE=1 python benchmarks/zeroshot_tags.py

Each photo has its true labels (several may hold: the astronaut photo shows a person); the label list also has
labels that hold for no photo. Figures: average precision over all (photo, label) pairs (threshold-free: how
well the score ranks true pairs above false ones), the best F1 and its threshold, and precision/recall of raw
cosine at a few thresholds.
"""
from __future__ import annotations

import numpy as np

from picseek.learn.zeroshot import label_scores, label_vectors
from picseek.models.registry import load_embedder

PHOTOS = {  # scikit-image sample -> labels that truly hold
    "chelsea": {"cat"}, "coffee": {"cup of coffee"}, "astronaut": {"astronaut", "person"}, "rocket": {"rocket"},
    "camera": {"person", "camera"}, "stereo_motorcycle": {"motorcycle"}, "clock": {"clock"}, "coins": {"coins"},
    "moon": {"moon"}, "brick": {"brick wall"}, "grass": {"grass"}, "horse": {"horse"},
    "hubble_deep_field": {"galaxy"}, "page": {"text"}, "text": {"text"}, "gravel": {"gravel"}, "colorwheel": set(),
}
LABELS = ["cat", "dog", "cup of coffee", "astronaut", "person", "rocket", "camera", "motorcycle", "clock", "coins",
          "moon", "brick wall", "grass", "horse", "galaxy", "text", "gravel", "car", "beach", "mountain", "bird",
          "flower", "pizza", "guitar", "boat", "tree", "building", "bicycle"]
TEMPERATURES = (0.01, 0.02, 0.05, 0.1)
THRESHOLDS = (0.35, 0.40, 0.45, 0.50, 0.55)


def photos():
    import skimage.data
    from PIL import Image

    for name in PHOTOS:
        a = getattr(skimage.data, name)()
        a = a[0] if isinstance(a, tuple) else a
        a = a.astype(np.uint8) * 255 if a.dtype == bool else a
        a = np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]
        yield Image.fromarray(a.astype(np.uint8))


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    order = np.argsort(-s, kind="stable")
    hits = y[order].astype(float)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / max(hits.sum(), 1))


def best_f1(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    best = (0.0, 0.0)
    for t in np.unique(s):
        f = f1(y, s >= t)
        best = max(best, (f, float(t)))
    return best


def f1(y: np.ndarray, pred: np.ndarray) -> float:
    tp = float((y & pred).sum())
    return 2 * tp / max(float(y.sum() + pred.sum()), 1.0)


def softmax(s: np.ndarray, t: float) -> np.ndarray:
    z = s / t
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def main() -> None:
    emb = load_embedder("builtin")
    images = emb.embed_images(list(photos()))
    y = np.array([[label in PHOTOS[p] for label in LABELS] for p in PHOTOS])
    print(f"{len(PHOTOS)} photos x {len(LABELS)} labels, {int(y.sum())} true pairs, model builtin")
    for template in ("{label}", "a photo of {label}"):
        cos = label_scores(images, label_vectors(emb, LABELS, template))
        print(f"\nprompt {template!r}")
        methods = {"cosine": cos} | {f"softmax T={t}": softmax(cos, t) for t in TEMPERATURES}
        for name, s in methods.items():
            f, t = best_f1(y.ravel(), s.ravel())
            print(f"  {name:<16} average precision {average_precision(y.ravel(), s.ravel()):.3f}   "
                  f"best F1 {f:.3f} at {t:.3f}")
        stable_labels = [i for i, label in enumerate(LABELS) if any(label in v for v in PHOTOS.values())]
        for name, s in methods.items():
            if name == "cosine":
                continue
            t = float(name.split("=")[1])
            _, cut = best_f1(y.ravel(), s.ravel())
            fewer = softmax(cos[:, stable_labels], t) >= cut
            changed = int((fewer != (s[:, stable_labels] >= cut)).sum())
            print(f"  {name:<16} tags that change when the {len(LABELS) - len(stable_labels)} labels no photo shows "
                  f"are dropped: {changed} (cosine: 0, labels are scored alone)")
        for t in THRESHOLDS:
            pred = cos >= t
            tp = int((pred & y).sum())
            print(f"  cosine >= {t:.2f}: {int(pred.sum()):3d} tags, precision {tp / max(int(pred.sum()), 1):.2f}, "
                  f"recall {tp / int(y.sum()):.2f}, photos tagged {int(pred.any(axis=1).sum())}")


if __name__ == "__main__":
    main()

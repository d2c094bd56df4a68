"""Datasets for training and evaluation: images with captions, or images with class labels.

Three sources, one shape (`Dataset`):
- a folder of class sub-folders (`cats/`, `dogs/`, ...): each image's caption comes from a template
  ("a photo of a {class}"), and the class is kept for zero-shot accuracy;
- a table of image + caption rows (CSV/TSV, JSON, JSON Lines, Parquet, read by `ingest.sources.read_rows`), or a
  Karpathy-style split file (`{"images": [{"filename", "filepath"?, "split", "sentences": [{"raw"}]}]}`), where
  an image may have several captions;
- a library's own imported fields (`description` by default) as captions.

Captions point at images by index (`caption_image`), so several captions per image are kept as they are: the
metrics in `evaluate.py` count an image as found by any of its captions.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..ingest.paths import IMAGE_EXTENSIONS
from ..ingest.sources import pick_column, read_rows

log = logging.getLogger(__name__)

CLASS_TEMPLATE = "a photo of a {class}"
IMAGE_COLUMNS = ("image", "path", "file", "filename", "filepath", "image_path", "img")
CAPTION_COLUMNS = ("caption", "text", "description", "title", "alt", "sentence", "label")
LIBRARY_PREFIX = "library:"


@dataclass
class Dataset:
    """Images (paths) and captions; `caption_image[j]` is the index of caption j's image. For class folders,
    `classes` names the classes and `labels[i]` is image i's class index."""

    images: list[str]
    captions: list[str]
    caption_image: np.ndarray
    classes: list[str] | None = None
    labels: np.ndarray | None = None
    source: str = ""
    skipped: list[str] = field(default_factory=list)  # rows that named no usable image or caption

    def __post_init__(self) -> None:
        self.caption_image = np.asarray(self.caption_image, dtype=np.int64)
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, image_idx: np.ndarray | list[int]) -> Dataset:
        """The images at `image_idx` (in that order) with all their captions."""
        image_idx = np.asarray(image_idx, dtype=np.int64)
        new_of_old = np.full(len(self.images), -1, dtype=np.int64)
        new_of_old[image_idx] = np.arange(len(image_idx))
        keep = np.nonzero(new_of_old[self.caption_image] >= 0)[0]
        return Dataset([self.images[i] for i in image_idx], [self.captions[j] for j in keep],
                       new_of_old[self.caption_image[keep]], self.classes,
                       None if self.labels is None else self.labels[image_idx], self.source)


def split(ds: Dataset, holdout: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, held-out) by image, so all captions of a held-out image are held out too. At least one image on
    each side when holdout > 0 and there are two images or more."""
    if not 0 <= holdout < 1:
        raise UsageError(f"held-out fraction must be in [0, 1), not {holdout}")
    order = np.random.default_rng(seed).permutation(len(ds))
    n_out = int(round(len(ds) * holdout))
    if holdout > 0 and len(ds) >= 2:
        n_out = min(max(n_out, 1), len(ds) - 1)
    return ds.subset(np.sort(order[n_out:])), ds.subset(np.sort(order[:n_out]))


def load_dataset(source: str | os.PathLike, *, template: str = CLASS_TEMPLATE, image_root: str | None = None,
                 split_name: str | None = None, library=None, image_column: str | None = None,
                 caption_column: str | None = None) -> Dataset:
    """A folder of class folders, a caption table / Karpathy file, or `library:FIELD` (needs `library`)."""
    text = os.fspath(source)
    if text.startswith(LIBRARY_PREFIX):
        if library is None:
            raise UsageError(f"{text}: give the library (--library PATH) whose fields are the captions")
        return library_captions(library, text[len(LIBRARY_PREFIX):] or "description")
    path = Path(text).expanduser()
    if path.is_dir():
        return class_folders(path, template)
    if path.is_file():
        return caption_table(path, image_root=image_root, split_name=split_name, image_column=image_column,
                             caption_column=caption_column)
    raise UsageError(f"data not found: {text} (expected a folder of class folders, a CSV/JSON of image + caption, "
                     f"or {LIBRARY_PREFIX}FIELD)")


def class_folders(root: Path, template: str = CLASS_TEMPLATE) -> Dataset:
    """Each sub-folder is a class (its name, with _ and - read as spaces); its images (any depth) its examples."""
    if "{class}" not in template:
        raise UsageError(f"caption template {template!r} must contain {{class}}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    images, labels, classes = [], [], []
    for folder in folders:
        files = sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                       and not p.name.startswith("."))
        if not files:
            continue
        classes.append(" ".join(folder.name.replace("_", " ").replace("-", " ").split()))
        images += files
        labels += [len(classes) - 1] * len(files)
    if len(classes) < 2:
        raise UsageError(f"{root}: expected at least two class sub-folders with images in them, found "
                         f"{len(classes)}")
    captions = [template.replace("{class}", classes[c]) for c in labels]
    return Dataset(images, captions, np.arange(len(images)), classes, np.asarray(labels), str(root))


def caption_table(path: Path, *, image_root: str | None = None, split_name: str | None = None,
                  image_column: str | None = None, caption_column: str | None = None) -> Dataset:
    """Rows of image + caption (several rows may name one image), or Karpathy-style rows with `sentences`.
    Relative image paths are taken from `image_root` (default: the file's folder)."""
    base = Path(image_root).expanduser() if image_root else path.resolve().parent
    rows = list(read_rows(path))
    if not rows:
        raise UsageError(f"{path}: no rows")
    karpathy = "sentences" in rows[0]
    if karpathy and split_name is None and any(r.get("split") == "test" for r in rows):
        split_name = "test"
    if split_name is not None:
        rows = [r for r in rows if r.get("split") == split_name]
        if not rows:
            raise UsageError(f"{path}: no rows in split {split_name!r}")
    img_col = None if karpathy else _pick(rows[0], image_column, IMAGE_COLUMNS, "image", path)
    cap_col = None if karpathy else _pick(rows[0], caption_column, CAPTION_COLUMNS, "caption", path)
    index: dict[str, int] = {}
    captions, owner, skipped = [], [], []
    for n, row in enumerate(rows, 1):
        ref = _karpathy_path(row) if karpathy else str(row.get(img_col) or "").strip()
        texts = _karpathy_captions(row) if karpathy else [str(row.get(cap_col) or "").strip()]
        texts = [t for t in texts if t]
        if not ref or not texts:
            skipped.append(f"row {n}: no {'image' if not ref else 'caption'}")
            continue
        full = str((base / ref).resolve()) if not os.path.isabs(ref) else ref
        i = index.setdefault(full, len(index))
        captions += texts
        owner += [i] * len(texts)
    if not index:
        raise UsageError(f"{path}: no row names both an image and a caption")
    if skipped:
        log.warning("%s: %d rows skipped (%s...)", path, len(skipped), skipped[0])
    return Dataset(list(index), captions, np.asarray(owner), source=str(path), skipped=skipped)


def library_captions(library, field_name: str = "description") -> Dataset:
    """Every indexed image that has the imported field `field_name`, with that field as its caption."""
    values = library.store.field_values(field_name)
    rows = library.store.get_images(list(values))
    pairs = [(rows[i]["path"], " ".join(str(v).split())) for i, v in sorted(values.items()) if i in rows]
    pairs = [(p, v) for p, v in pairs if v]
    if not pairs:
        raise UsageError(f"library {library.path} has no images with a {field_name!r} field "
                         "(import one with picseek import-metadata)")
    return Dataset([p for p, _ in pairs], [v for _, v in pairs], np.arange(len(pairs)),
                   source=f"{LIBRARY_PREFIX}{field_name}")


def _pick(row: dict, asked: str | None, candidates: tuple[str, ...], what: str, path: Path) -> str:
    """The column of the first row that `asked` names exactly, else the first of `candidates` in any case."""
    return pick_column([row], asked or None, candidates, key=str.lower, exact=True, source=path,
                       unknown="{source}: no column {asked!r} (columns: {columns})",
                       not_found="{source}: no " + what + " column (looked for {candidates}; columns: {columns})")


def _karpathy_path(row: dict) -> str:
    name = str(row.get("filename") or "").strip()
    folder = str(row.get("filepath") or "").strip()
    return os.path.join(folder, name) if name and folder else name


def _karpathy_captions(row: dict) -> list[str]:
    out = []
    for s in row.get("sentences") or []:
        text = s.get("raw") if isinstance(s, dict) else s
        if not text and isinstance(s, dict) and s.get("tokens"):
            text = " ".join(s["tokens"])
        out.append(" ".join(str(text or "").split()))
    return out

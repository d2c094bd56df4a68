"""Tags by hand (add, remove) and by zero-shot scoring over the whole library (source "auto", score kept)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from ..errors import UsageError
from ..ingest.paths import store_path
from ..learn import zeroshot
from ..models.base import MAIN
from ..store.base import MAX_ID, clean_tags

USER = "user"
BLOCK = 4096  # images scored per matrix product


@dataclass
class AutoTagReport:
    labels: int
    images: int
    tags: int  # tags written
    threshold: float
    per_label: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_image(store, ref: int | str) -> int:
    """An image id (42, "42", "id:42") or the path of an indexed file -> its id."""
    text = str(ref).strip()
    text = text[3:] if text.lower().startswith("id:") else text
    if text.isdigit() and text.isascii():
        image_id = int(text)
        if not 0 < image_id <= MAX_ID or not store.get_images([image_id]):
            raise UsageError(f"id:{image_id} is not an indexed image")
        return image_id
    found = store.find_path(store_path(text))
    if found is None:
        raise UsageError(f"{ref!r} is neither an image id nor the path of an indexed image")
    return found


def add(store, ref: int | str, tags: Sequence[str]) -> list[str]:
    image_id = resolve_image(store, ref)
    tags = clean_tags(tags)
    store.add_tags([(image_id, t, USER, None) for t in tags])
    return [t["tag"] for t in store.get_tags([image_id])[image_id]]


def remove(store, ref: int | str, tags: Sequence[str]) -> int:
    return store.remove_tags([resolve_image(store, ref)], clean_tags(tags))


def auto_tag(store, embedder, model_name: str | None, labels: Sequence[str], *, threshold: float | None = None,
             template: str = zeroshot.DEFAULT_TEMPLATE,
             progress: Callable[[int, int], None] | None = None) -> AutoTagReport:
    """Score every image against every label; tag those at or above the threshold (earlier automatic tags of
    these labels are replaced; tags from the user or an import are kept)."""
    labels = clean_tags(labels)
    if threshold is None:
        threshold = zeroshot.default_threshold(model_name)
    label_vecs = zeroshot.label_vectors(embedder, labels, template)
    ids, mat = store.vectors(MAIN)
    rows: list[tuple[int, str, float]] = []
    for start in range(0, len(ids), BLOCK):
        scores = zeroshot.label_scores(mat[start:start + BLOCK], label_vecs)
        for r, c in zip(*(scores >= threshold).nonzero()):
            rows.append((int(ids[start + r]), labels[c], round(float(scores[r, c]), 6)))
        if progress:
            progress(min(start + BLOCK, len(ids)), len(ids))
    written = store.replace_auto_tags(labels, rows)
    per_label = dict.fromkeys(labels, 0)
    for _, label, _ in rows:
        per_label[label] += 1
    return AutoTagReport(len(labels), len(ids), written, threshold, per_label)

"""Where a model's weights come from: the Hugging Face hub and its local cache, shared by every backend that fetches
weights (models/hf.py, models/onnx_repo.py, models/blip.py through hf) and by the registry's `auto` choice.

`load_repo` is the one offline rule: the local cache first (no network at all, so a cached model never changes under a
library that recorded its revision), then a download where the hub answers, else a `ModelError` that says how to get
the model. `hash_sampled` is how a model folder's revision is worked out without reading its weights whole.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ModelError, one_line

log = logging.getLogger(__name__)

T = TypeVar("T")


def hub_reachable(timeout: float = 2.0) -> bool:
    """A quick check (no download) that the model hub answers; False when offline mode is set."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    import httpx

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        httpx.head(endpoint, timeout=timeout)
        return True
    except httpx.HTTPError:
        return False


def load_repo(repo: str, load: Callable[..., T]) -> T:
    """`load(repo, local_files_only=...)` from the local cache, else from the hub where it answers. `load` raises
    OSError for "not (completely) in the cache"; a failed download becomes a one-line ModelError."""
    try:
        return load(repo, local_files_only=True)
    except OSError:  # not (completely) in the local cache
        pass
    if not hub_reachable():
        raise ModelError(f"model {repo} is not in the local cache and the hub is unreachable: run once with "
                         "internet (it is downloaded and cached), or pass a local model folder") from None
    log.info("downloading model %s", repo)
    try:
        return load(repo, local_files_only=False)
    except OSError as e:
        raise ModelError(f"could not get model {repo} from the hub: {one_line(e)}") from e


def cached_file(repo: str, filename: str) -> str | None:
    """The path of `filename` of `repo` in the local hub cache, None where it is not there (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    hit = try_to_load_from_cache(repo, filename)
    return hit if isinstance(hit, str) else None


def hash_sampled(h: Any, path: Path, name: str | None = None) -> None:
    """Feed a big file's name, size and 8 sampled 4 KiB chunks (the last at its end) into hash `h`."""
    size = path.stat().st_size
    h.update(f"{name or path.name}\0{size}\0".encode())
    with path.open("rb") as f:
        for k in range(1, 9):
            f.seek(max(0, size * k // 8 - 4096))
            h.update(f.read(4096))

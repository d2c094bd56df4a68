"""picseek: find images by what they show.

    import picseek
    lib = picseek.Library("~/picseek-library")
    lib.index(["~/Pictures"])
    for hit in lib.search("a dog running on the beach", limit=5):
        print(hit.score, hit.path)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__

__all__ = ["Library", "Hit", "IndexReport", "SearchRequest", "PicseekError", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .errors import PicseekError
    from .library import Hit, IndexReport, Library
    from .request import SearchRequest


def __getattr__(name: str):
    # Lazy: `import picseek` stays cheap; torch and friends load only when a model is needed.
    if name in ("Library", "Hit", "IndexReport"):
        from . import library

        return getattr(library, name)
    if name == "SearchRequest":
        from .request import SearchRequest

        return SearchRequest
    if name == "PicseekError":
        from .errors import PicseekError

        return PicseekError
    raise AttributeError(name)

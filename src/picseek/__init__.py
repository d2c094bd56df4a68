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

__all__ = ["Library", "Hit", "Hits", "IndexReport", "SearchRequest", "PicseekError", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .errors import PicseekError
    from .hits import Hit, Hits
    from .library import IndexReport, Library
    from .request import SearchRequest


def __getattr__(name: str):
    # Lazy: `import picseek` stays cheap; models and stores load only when a Library is used.
    if name in ("Library", "IndexReport"):
        from . import library

        return getattr(library, name)
    if name in ("Hit", "Hits"):
        from . import hits

        return getattr(hits, name)
    if name == "SearchRequest":
        from .request import SearchRequest

        return SearchRequest
    if name == "PicseekError":
        from .errors import PicseekError

        return PicseekError
    raise AttributeError(f"module 'picseek' has no attribute {name!r}")


def __dir__() -> list[str]:
    # dir(picseek) and tab completion list the lazy exports too (a module's default dir() only knows what is loaded)
    return sorted(set(globals()) | set(__all__))

"""Which store a library uses, chosen by its URL (location.py reads the URL): the built-in store in the library
folder, or a ChromaDB collection (server or embedded folder; the library folder then holds only the local state:
the index lock and the server's thumbnails)."""
from __future__ import annotations

import os
from pathlib import Path

from .location import parse_store_url


def open_store(url: str | None, folder: str | os.PathLike, create: bool = True):
    """The store a URL names, for the library folder `folder` (the built-in store lives in it)."""
    location = parse_store_url(url or "")
    if location is None:
        from .sqlite import SQLiteStore

        return SQLiteStore(folder, create=create)
    from .chroma import ChromaStore

    store = ChromaStore(location, create=create)
    Path(folder).expanduser().mkdir(parents=True, exist_ok=True)  # local state: the index lock, thumbnails
    return store

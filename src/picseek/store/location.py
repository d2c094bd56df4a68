"""Store URLs (the `store` setting, `--store`, `Library(store=...)`) read into where a store lives.

    (empty), builtin, sqlite                      the built-in store: picseek.db in the library folder
    chroma://HOST[:PORT]/COLLECTION               a ChromaDB server over HTTP (port 8000 by default)
    chroma:///ABS/PATH[?collection=NAME]          an embedded ChromaDB folder (collection "picseek" by default)

With ChromaDB the library folder still holds the local state: the index lock and the server's thumbnails.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from ..errors import UsageError

BUILTIN = ("", "builtin", "sqlite")
DEFAULT_PORT = 8000
DEFAULT_COLLECTION = "picseek"
# ChromaDB's own rule: 3-512 characters of [a-zA-Z0-9._-], starting and ending with a letter or digit, no "..";
# picseek adds ".SPACE" and ".state" to the name, so it keeps some room.
_COLLECTION = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?!\.)){1,400}[A-Za-z0-9]$")
URL_FORMS = "chroma://HOST:PORT/COLLECTION or chroma:///ABS/PATH?collection=NAME"


@dataclass(frozen=True)
class ChromaLocation:
    """Where a ChromaDB collection lives: a server (host, port) or an embedded folder (path)."""

    collection: str
    host: str = ""
    port: int = DEFAULT_PORT
    path: str = ""

    @property
    def url(self) -> str:
        if self.path:
            return f"chroma://{self.path}?collection={self.collection}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"chroma://{host}:{self.port}/{self.collection}"


def parse_store_url(url: str) -> ChromaLocation | None:
    """None for the built-in store; a ChromaLocation for a chroma:// URL; anything else is a UsageError."""
    text = str(url or "").strip()
    if text.lower() in BUILTIN:
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"bad store URL {text!r}: {exc} (write {URL_FORMS})") from None
    if parts.scheme.lower() != "chroma":
        raise UsageError(f"unknown store {text!r}: leave it empty for the built-in store, or write {URL_FORMS}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"collection"})
    if unknown:
        raise UsageError(f"bad store URL {text!r}: unknown parameter {unknown[0]!r} (only collection=NAME)")
    if parts.netloc:
        name = parts.path.strip("/")
        if "collection" in query or not name:
            raise UsageError(f"bad store URL {text!r}: name the collection in the path: chroma://HOST:PORT/NAME")
        return ChromaLocation(_collection(name, text), host=parts.hostname or "", port=port or DEFAULT_PORT)
    if not parts.path.startswith("/"):
        raise UsageError(f"bad store URL {text!r}: an embedded ChromaDB folder needs an absolute path "
                         f"(chroma:///ABS/PATH; three slashes), a server needs chroma://HOST:PORT/NAME")
    name = query.get("collection", [DEFAULT_COLLECTION])[-1]
    return ChromaLocation(_collection(name, text), path=os.path.normpath(parts.path))


def _collection(name: str, url: str) -> str:
    if not _COLLECTION.match(name):
        raise UsageError(f"bad store URL {url!r}: {name!r} is not a ChromaDB collection name (3-400 letters, digits, "
                         "'.', '_' or '-', starting and ending with a letter or digit)")
    return name

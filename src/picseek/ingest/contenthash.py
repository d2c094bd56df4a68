"""Content hashes of image files: what finds a moved file (same size, then same hash), what merging shards compares,
and what a thumbnail's bytes are checked against.

The stored value names its kind, so libraries made before keep working without a schema change:

- `b3:` + 32 hex digits: BLAKE3, its first 128 bits. Written for every file decoded since issue 20.
- 32 hex digits, no prefix: blake2b-128, what libraries made before hold ("legacy").

A row keeps its kind until its file is decoded again (new or changed files get the current kind); a moved file is
matched in the kind of each row it is compared with (`file_hashes`), so a library is migrated lazily, by the runs
that read the files anyway, and never in a pass of its own.

Why BLAKE3: on a 3.3 MB photo it takes 0.7 ms on one core against blake2b's 4.4 ms and SHA-256's 2.6 ms (with
SHA-NI; several times that without), 8 % of a 12 MP photo's decode cost (benchmarks/decode_cost.py). xxh3-128 is
faster still (0.1 ms), but it is not collision resistant: someone who can write into the indexed folders could make
a file of the same size and hash as one that went missing, take over its vectors and fields as a "move", and be
shown under its cached thumbnail. BLAKE3 is a cryptographic hash (128 bits of it: ~2^64 work for a collision), so a
change detector and move matcher built on it cannot be fooled on purpose, and for 0.5 ms more.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable

from blake3 import blake3

__all__ = ["PREFIX", "CURRENT", "LEGACY", "kind_of", "hash_bytes", "hasher", "matches"]

PREFIX = "b3:"
CURRENT, LEGACY = "blake3", "blake2b"
_DIGEST = 16  # bytes (128 bits) in both kinds


class _Blake3:
    __slots__ = ("_h",)

    def __init__(self) -> None:
        self._h = blake3()  # one thread: a decode worker has one core

    def update(self, data) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return PREFIX + self._h.hexdigest(length=_DIGEST)


class _Blake2b:
    __slots__ = ("_h",)

    def __init__(self) -> None:
        self._h = hashlib.blake2b(digest_size=_DIGEST)

    def update(self, data) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


_HASHERS: dict[str, Callable[[], _Blake3 | _Blake2b]] = {CURRENT: _Blake3, LEGACY: _Blake2b}


def kind_of(stored: str) -> str:
    """The kind of a stored hash: CURRENT for `b3:...`, LEGACY for anything else (blake2b-128 hex, or "")."""
    return CURRENT if stored.startswith(PREFIX) else LEGACY


def hasher(kind: str = CURRENT) -> _Blake3 | _Blake2b:
    """An incremental hasher (update, hexdigest) whose hexdigest is a stored value of that kind."""
    return _HASHERS[kind]()


def hash_bytes(data, kind: str = CURRENT) -> str:
    """The stored value for these bytes (the current kind unless asked otherwise)."""
    if kind == CURRENT:
        return PREFIX + blake3(data).hexdigest(length=_DIGEST)
    return hashlib.blake2b(data, digest_size=_DIGEST).hexdigest()


def matches(data, stored: str) -> bool:
    """Whether bytes have this stored hash (of either kind; the hex compared case-insensitively)."""
    return bool(stored) and hash_bytes(data, kind_of(stored)) == stored.lower()

"""The set of images a search may return: the id sets of a condition (filters, hard tags) fetched from SQL, cached
while the database does not change, and combined in numpy into a mask over the vector matrix's rows."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .sqlfilters import Condition, IdQuery

CACHE_SIZE = 32
_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class Allowed:
    """Images in `include` (every image when None) and not in `exclude`."""

    include: np.ndarray | None
    exclude: np.ndarray

    @property
    def none_included(self) -> bool:
        return self.include is not None and len(self.include) == 0

    def mask(self, ids: np.ndarray) -> np.ndarray:
        """One bool per id: is it allowed."""
        top = max(int(a.max(initial=0)) for a in (ids, self.exclude, *(() if self.include is None else
                                                                        (self.include,)))) + 1
        lut = np.ones(top, dtype=bool) if self.include is None else np.zeros(top, dtype=bool)
        if self.include is not None:
            lut[self.include] = True
        lut[self.exclude] = False
        return lut[ids]


def id_set(store, q: IdQuery) -> np.ndarray:
    """The ids of one query, from the cache while the database has not changed for this thread's connection."""
    key = (str(store.db_path), store.change_stamp(), q.sql, q.params)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    ids = store.read_id_set(q.sql, q.params)
    ids.setflags(write=False)
    with _lock:
        _cache[key] = ids
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return ids


def allowed_ids(store, cond: Condition) -> Allowed | None:
    """What `cond` allows, or None when it allows everything (no condition)."""
    if not cond.ids:
        return None
    include, exclude = None, []
    for q in sorted(cond.ids, key=lambda q: q.exclude):  # includes first: an empty one ends it early
        ids = id_set(store, q)
        if q.exclude:
            exclude.append(ids)
        else:
            include = ids if include is None else np.intersect1d(include, ids)
            if len(include) == 0:
                break
    return Allowed(include, np.concatenate(exclude) if exclude else np.zeros(0, dtype=np.int64))

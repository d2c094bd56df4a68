"""Near-duplicate groups: every pair of images whose vectors' cosine similarity reaches a threshold, joined into
groups (union-find). Tiled matrix products keep memory at BLOCK x COLUMNS floats (32 MB), never N x N."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

BLOCK = 1024
COLUMNS = 8192


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:  # path compression
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def duplicate_groups(ids: np.ndarray, mat: np.ndarray, threshold: float,
                     progress: Callable[[int, int], None] | None = None) -> list[list[tuple[int, float]]]:
    """Groups of at least two images as (image id, similarity to the group's first image), biggest groups first.
    Groups are transitive: a~b and b~c put a, b and c together even when a and c are further apart."""
    n = len(ids)
    uf = _UnionFind(n)
    for start in range(0, n, BLOCK):
        block = mat[start:start + BLOCK]
        for col in range(start, n, COLUMNS):  # only pairs (i, j) with j > i: the upper triangle
            rows, cols = np.nonzero(block @ mat[col:col + COLUMNS].T >= threshold)
            for r, c in zip(rows.tolist(), cols.tolist()):
                if col + c > start + r:
                    uf.union(start + r, col + c)
        if progress:
            progress(min(start + BLOCK, n), n)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(uf.find(i), []).append(i)
    groups = []
    for rows in members.values():
        if len(rows) > 1:
            sims = mat[rows] @ mat[rows[0]]
            groups.append([(int(ids[r]), float(s)) for r, s in zip(rows, sims)])
    groups.sort(key=lambda g: (-len(g), g[0][0]))
    return groups

"""Fetching an image over HTTP(S) with a size cap and a timeout (for query images given by URL)."""
from __future__ import annotations

from ..errors import ImageError


def fetch_bytes(url: str, max_bytes: int, timeout: float) -> bytes:
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True,
                          headers={"User-Agent": "picseek"}) as resp:
            if resp.status_code >= 400:
                raise ImageError(f"cannot fetch {url}: HTTP {resp.status_code}")
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise ImageError(f"cannot fetch {url}: {int(declared)} bytes is over the {max_bytes}-byte limit")
            chunks, total = [], 0
            for chunk in resp.iter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise ImageError(f"cannot fetch {url}: larger than the {max_bytes}-byte limit")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise ImageError(f"cannot fetch {url}: {exc.__class__.__name__}: {exc}") from exc
    return b"".join(chunks)

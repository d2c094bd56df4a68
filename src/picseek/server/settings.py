"""What a running server is allowed to do: where it binds, who may write, how big an upload may be."""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerSettings:
    """Settings of one server process. The defaults are the safe ones: loopback only, no CORS, small uploads.

    token: the bearer token that write operations need (PICSEEK_TOKEN); required when `host` is not loopback,
      and always when `require_token` is set.
    allowed_hosts: more Host header values to accept. A loopback server accepts only loopback names (which stops
      DNS-rebinding pages from reading the API) plus these; any other server accepts any name, or only its own
      address, loopback names and these when given. "*" accepts any.
    folders: the folders an index run (at start and POST /api/index) scans; a request never names a path.
    watch: follow the folders (ingest/watch.py): file events and periodic re-scans keep the library in step.
    ocr: index runs read the words in images (True: turned on for the library; None: as the library says).
    max_download_images, max_download_bytes: the most images, and the most bytes of their files, one zip of
      POST /api/download may hold.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    folders: tuple[str, ...] = ()
    token: str | None = None
    require_token: bool = False
    allowed_hosts: tuple[str, ...] | None = None
    cors_origins: tuple[str, ...] = ()
    max_upload_bytes: int = 20_000_000
    max_upload_pixels: int = 50_000_000
    thumb_size: int = 320
    max_download_images: int = 1000
    max_download_bytes: int = 2_000_000_000
    index_workers: int | None = None
    index_on_start: bool = True
    watch: bool = False
    ocr: bool | None = None

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def writes_need_token(self) -> bool:
        return self.require_token or not self.loopback

    def effective_allowed_hosts(self) -> tuple[str, ...]:
        extra = tuple(self.allowed_hosts or ())
        if "*" in extra:
            return ("*",)
        if self.loopback:
            return LOOPBACK_NAMES + (self.host,) + extra
        # loopback names too: a health check on the machine itself (no web page can send them from elsewhere)
        return (self.host,) + extra + LOOPBACK_NAMES if extra else ("*",)

    def check(self) -> None:
        """Refuse settings that would be unsafe or cannot work (raises UsageError)."""
        from ..errors import UsageError

        if self.writes_need_token and not self.token:
            raise UsageError(f"serving on {self.host} makes the library reachable from other machines: set "
                             "PICSEEK_TOKEN (write operations need it as 'Authorization: Bearer TOKEN'), or bind "
                             "to 127.0.0.1")
        if self.token is not None and len(self.token) < 8:
            raise UsageError("PICSEEK_TOKEN is too short: use at least 8 characters (e.g. a random 32-character "
                             "string)")
        if self.max_upload_bytes < 1 or self.max_upload_pixels < 1:
            raise UsageError("upload limits must be positive")
        if self.max_download_images < 1 or self.max_download_bytes < 1:
            raise UsageError("download limits must be positive")
        for folder in self.folders:
            if not os.path.isdir(folder):
                raise UsageError(f"not a folder: {folder}")

"""The REST API and the web page (FastAPI): `create_app(library, settings)`; `picseek serve` runs it."""
from __future__ import annotations

from .app import create_app
from .settings import ServerSettings

__all__ = ["create_app", "ServerSettings"]

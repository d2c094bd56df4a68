"""Where vectors and metadata live. `Store` is the protocol; `SQLiteStore` the embedded default."""
from .base import FileState, ImageRecord, Store
from .sqlite import SQLiteStore

__all__ = ["FileState", "ImageRecord", "Store", "SQLiteStore"]

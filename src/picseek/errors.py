"""The errors picseek raises. Each edge (CLI, HTTP) translates them once into a message and an exit code/status."""
from __future__ import annotations


class PicseekError(Exception):
    """Base class: a problem the user can act on. The message is one clear line that says what to do."""

    exit_code = 1


class UsageError(PicseekError):
    """Bad input from the user: an empty query, an unreadable query image, a bad option value."""

    exit_code = 2


class ModelError(PicseekError):
    """A model that is unknown, cannot be loaded, or is not available offline."""


class ModelMismatchError(PicseekError):
    """The library's vectors were made by another model than the one asked for."""


class LibraryError(PicseekError):
    """A library that is missing, unreadable or from a newer picseek."""


class ImageError(PicseekError):
    """One image that cannot be read. During indexing it is recorded and skipped, never fatal."""


class StorageError(PicseekError):
    """Object storage (s3://, gs://, https://, ...) that cannot be listed: no credentials, access denied,
    unreachable. A single object that cannot be read is an ImageError-like error row instead."""

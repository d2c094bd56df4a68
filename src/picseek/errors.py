"""The errors picseek raises. Each edge (CLI, HTTP) translates them once into a message and an exit code/status."""
from __future__ import annotations

import errno
import os

# The CLI's exit statuses, the same in every command (grep's rule; docs/cli.md lists this table).
FOUND, NOTHING_FOUND, USAGE, CANNOT_GO_ON, INTERNAL, INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_CODES = {
    FOUND: "done; for commands that find things (search, similar, duplicates, tag list, remove, import-metadata), "
           "at least one was found",
    NOTHING_FOUND: "nothing found: no hit (a threshold, filters or tags that match nothing, --adaptive), no "
                   "near-duplicate group, no tag, no image to remove, no metadata row that joined",
    USAGE: "a usage or input error: a bad option, query or filter, a file or image that cannot be read, a model the "
           "library refuses, a missing extra",
    CANNOT_GO_ON: "picseek cannot go on: no library there, a disk that refuses writes, a model that is not "
                  "available, object storage or a ChromaDB server that cannot be reached",
    INTERNAL: "an internal error (a bug: run again with -v for the traceback, and please report it)",
    INTERRUPTED: "interrupted (Ctrl-C; run the same command again to continue)",
}


class PicseekError(Exception):
    """Base class: a problem the user can act on. The message is one clear line that says what to do."""

    exit_code = CANNOT_GO_ON


class UsageError(PicseekError):
    """Bad input from the user: an empty query, an unreadable query image, a bad option value."""

    exit_code = USAGE


class FilterError(UsageError):
    """A `--where` filter that cannot be read or applied (the REST API's `bad_filter`)."""


class ModelError(PicseekError):
    """A model that is unknown, cannot be loaded, or is not available offline."""


class ModelMismatchError(PicseekError):
    """The library's vectors were made by another model than the one asked for."""

    exit_code = USAGE


class LibraryError(PicseekError):
    """A library that is missing, unreadable or from a newer picseek."""


class IndexBusyError(LibraryError):
    """Another index run holds the library's one-run-at-a-time lock (a watcher waits and tries again)."""


class ImageError(PicseekError):
    """One image that cannot be read. During indexing it is recorded and skipped, never fatal."""

    exit_code = USAGE


class MissingExtraError(PicseekError):
    """A feature asked for whose optional packages are not installed; the message names the extra to install."""

    exit_code = USAGE


class NoMatchError(PicseekError):
    """Filters (or tags) that no image in the library satisfies: an honest "nothing", with the reason."""

    exit_code = NOTHING_FOUND


class StorageError(PicseekError):
    """Object storage (s3://, gs://, https://, ...) that cannot be listed: no credentials, access denied,
    unreachable. A single object that cannot be read is an ImageError-like error row instead."""


class LibraryIOError(LibraryError):
    """The disk under a library refused it: full, read-only, no permission, gone (an unmounted disk or network
    share) or failing. What was committed before stays; the message says what to do."""


_ERRNO_KINDS = {errno.ENOSPC: "full", errno.EDQUOT: "full", errno.EROFS: "read-only", errno.EACCES: "denied",
                errno.EPERM: "denied", errno.EIO: "io", **dict.fromkeys(
                    (errno.ENOENT, errno.ENOTDIR, errno.ENOTCONN, errno.ESTALE, errno.ENODEV, errno.ENXIO), "gone")}
# SQLite's primary result codes (the low byte of sqlite3.Error.sqlite_errorcode) that mean the disk, not the SQL:
# PERM, READONLY, IOERR, FULL, CANTOPEN -> the kind when the file system itself shows nothing wrong
_SQLITE_KINDS = {3: "denied", 8: "denied", 10: "io", 13: "full", 14: "gone"}
_SQLITE_FULL, _SQLITE_READONLY_DBMOVED = 13, 1032  # (DBMOVED: the database file was deleted or moved under us)


def _disk_state(library: str, file: str) -> tuple[str, str]:
    """What a SQLite error (which carries no errno) most likely means: ask the file system."""
    try:
        st = os.statvfs(library)
        os.stat(os.path.join(library, file))
    except OSError as exc:
        return "gone", exc.strerror or str(exc)
    if st.f_flag & os.ST_RDONLY:
        return "read-only", ""
    if st.f_bavail == 0:
        return "full", ""
    if not os.access(library, os.W_OK) or not os.access(os.path.join(library, file), os.W_OK):
        return "denied", ""
    return "", ""


def library_io_error(exc: BaseException, library: str | os.PathLike, file: str | os.PathLike | None = None,
                     doing: str | None = None) -> LibraryIOError | None:
    """The one translation of an OS or SQLite error met on a library's own files (disk full, read-only, permission
    denied, gone, I/O error) into a message that says what to do; None for any other error, which stays as it is
    (a programming error must not turn into advice). `file`: the file (default: the OSError's), shown relative to
    the library; `doing`: "writing", "opening", ... (default: writing when the disk is full or read-only)."""
    library = os.fspath(library)
    file = os.fspath(file if file is not None else getattr(exc, "filename", None) or "")
    if os.path.isabs(file) and not os.path.relpath(file, library).startswith(".."):
        file = os.path.relpath(file, library)
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, OSError):
        kind, reason = _ERRNO_KINDS.get(exc.errno, ""), exc.strerror or str(exc)
    elif isinstance(code, int) and code & 0xFF in _SQLITE_KINDS:
        kind, reason = _disk_state(library, file)  # SQLite keeps the errno to itself: ask the file system
        if not kind or code & 0xFF == _SQLITE_FULL:
            kind = _SQLITE_KINDS[code & 0xFF]
        if code == _SQLITE_READONLY_DBMOVED:
            kind = "gone"
        reason = reason or str(exc)
    else:
        return None
    doing = doing or ("writing" if kind in ("full", "read-only") else "opening")
    where = f"({doing} {file})" if file else f"({doing})"
    messages = {
        "full": f"the disk holding library {library} is full {where}: free some space and run the same command "
                "again; nothing indexed so far is lost",
        "read-only": f"library {library} is on a read-only file system {where}: remount it read-write, or copy the "
                     "library to a writable disk and use that --library; nothing indexed so far is lost",
        "denied": f"permission denied on library {library} {where}: give this user write access to the folder and "
                  "its files, or use another --library; nothing indexed so far is lost",
        "gone": f"library {library} cannot be reached {where}: {reason}; is its disk or network share still "
                "mounted? mount it and run the same command again",
        "io": f"disk I/O error on library {library} {where}: check that its disk is mounted and healthy, then run "
              "the same command again",
    }
    return LibraryIOError(messages[kind]) if kind else None


def one_line(exc: BaseException, *, whole: bool = False, named: bool = False, limit: int = 0) -> str:
    """The one rule for showing an exception inside a message: its first line (`whole`: all its lines, their
    whitespace made single spaces: for messages whose first line says little, Java's), or its type's name when it
    has no text; `named`: prefixed with the type's name where the text lacks it (not for OSError, whose text says
    it); `limit`: at most that many characters, cut with '...'."""
    text = str(exc).strip()
    text = " ".join(text.split()) if whole else text.splitlines()[0] if text else ""
    text = text or type(exc).__name__
    if named and type(exc).__name__ not in text and not isinstance(exc, OSError):
        text = f"{type(exc).__name__}: {text}"
    return text if not limit or len(text) <= limit else text[:limit - 3] + "..."

"""Optional tools a test needs (a JDK, nginx, a ChromaDB server, ...).

On a developer machine a missing tool skips the test with the reason. CI installs every tool and sets
PICSEEK_TEST_STRICT=1: there a missing tool fails the test instead, so a broken install step cannot hide behind a skip.
"""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess

import pytest

STRICT = os.environ.get("PICSEEK_TEST_STRICT", "") not in ("", "0")


def _missing(reason: str):
    if STRICT:
        pytest.fail(f"{reason} (PICSEEK_TEST_STRICT is set: CI must install it)", pytrace=False)
    pytest.skip(reason)


def need_module(name: str):
    """Import and return a module, or skip (fail under PICSEEK_TEST_STRICT) when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        _missing(f"needs the Python module {name!r}: {exc}")


def need_program(name: str, *candidates: str) -> str:
    """The path of a program on PATH (or one of `candidates`), or skip (fail under PICSEEK_TEST_STRICT)."""
    found = shutil.which(name)
    for path in (found, *candidates):
        if path and os.access(path, os.X_OK):
            return path
    _missing(f"needs the program {name!r} (not on PATH)")


def need_file(path, how: str):
    """A file a test reads (an npm package's script, ...): its Path, or skip (fail under PICSEEK_TEST_STRICT) with
    `how` to install it when it is missing."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        _missing(f"needs {path} ({how})")
    return path


def need_mount(*args: str) -> None:
    """Run `mount ARGS` (a tmpfs, a read-only bind mount: tests of full and read-only disks need root), or skip
    (fail under PICSEEK_TEST_STRICT) when it is refused."""
    mount = shutil.which("mount")
    proc = subprocess.run([mount, *args], capture_output=True, text=True) if mount else None
    if proc is None or proc.returncode != 0:
        _missing(f"needs `mount {' '.join(args)}` (root): {proc.stderr.strip() if proc else 'no mount program'}")

"""The CLI on hostile file names and numbers, as a user runs it (a subprocess, the built-in model): names that are
not UTF-8, with line breaks or terminal escape sequences, are indexed, printed escaped (one line each), handed to
`xargs -0` exactly, and kept exactly in JSON; ids and weights out of range are one-line errors."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from cli_helpers import PICSEEK, cli_env, run
from conftest import draw_photo

NAMES = [b"bad_\xff.jpg", b"latin_caf\xe9.jpg", b"line\nbreak.jpg", b"osc_\x1b]0;pwned\x07.jpg", b"plain.jpg"]
BROKEN = b"broken_\x1b[31mred\n.jpg"


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    env = cli_env(base)
    photos = base / "photos"
    photos.mkdir()
    raw = os.fsencode(photos)
    for k, name in enumerate(NAMES):
        draw_photo(("red", "green", "blue")[k % 3], size=(96, 64), seed=k).save(os.fsdecode(raw + b"/" + name), "JPEG")
    with open(raw + b"/" + BROKEN, "wb") as f:
        f.write(b"\xff\xd8\xff not a jpeg")
    lib = base / "lib"
    proc = subprocess.run(PICSEEK + ["--library", str(lib), "-v", "index", str(photos), "--model", "builtin"],
                          capture_output=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return {"env": env, "lib": lib, "raw": raw, "index": proc}


def _bytes(library, *args) -> subprocess.CompletedProcess:
    return subprocess.run(PICSEEK + ["--library", str(library["lib"]), *args], capture_output=True,
                          env=library["env"], timeout=300)


def _clean(out: bytes) -> None:
    """Nothing a terminal would act on: no ESC, BEL or other control byte but line breaks and tabs, valid UTF-8."""
    text = out.decode("utf-8")  # (raises on undecodable bytes)
    bad = [ch for ch in text if (ord(ch) < 32 and ch not in "\n\t\r") or 0x7f <= ord(ch) < 0xa0]
    assert not bad, f"control characters reached the terminal: {bad!r}"


def test_index_output_and_logs_are_escaped(library):
    proc = library["index"]
    _clean(proc.stdout)
    _clean(proc.stderr)
    assert b"broken_\\x1b[31mred\\n.jpg" in proc.stderr, proc.stderr


def test_paths_prints_one_escaped_line_per_hit(library):
    proc = _bytes(library, "search", "a photo", "--paths")
    assert proc.returncode == 0
    _clean(proc.stdout)
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == len(NAMES)
    assert {line.rsplit("/", 1)[1] for line in lines} == {
        "bad_\\xff.jpg", "latin_caf\\xe9.jpg", "line\\nbreak.jpg", "osc_\\x1b]0;pwned\\x07.jpg", "plain.jpg"}


def test_null_gives_each_path_exactly_for_xargs(library):
    proc = _bytes(library, "search", "a photo", "-0")
    assert proc.returncode == 0 and proc.stdout.endswith(b"\0")
    assert set(proc.stdout[:-1].split(b"\0")) == {library["raw"] + b"/" + n for n in NAMES}
    listed = subprocess.run(["xargs", "-0", "ls", "-1b"], input=proc.stdout, capture_output=True, timeout=30)
    assert listed.returncode == 0, "xargs -0 opens every file"


def test_json_keeps_every_byte_and_the_table_one_row_per_hit(library):
    hits = json.loads(_bytes(library, "search", "a photo", "--json").stdout)
    assert {os.fsencode(h["path"]) for h in hits} == {library["raw"] + b"/" + n for n in NAMES}
    table = _bytes(library, "search", "a photo")
    _clean(table.stdout)
    assert len(table.stdout.decode().splitlines()) == 1 + len(NAMES)


def test_status_errors_are_escaped(library):
    proc = _bytes(library, "status", "--errors")
    _clean(proc.stdout)
    assert "broken_\\x1b[31mred\\n.jpg" in proc.stdout.decode()


@pytest.mark.parametrize("args", [
    ["search", "id:99999999999999999999"],
    ["search", "id:0"],
    ["similar", "99999999999999999999"],
    ["tag", "add", "99999999999999999999", "beach"],
    ["search", "nan:cat"],
    ["search", "inf:cat"],
    ["search", "a cat", "--threshold", "nan"],
])
def test_numbers_out_of_range_are_one_line_errors(library, args):
    proc = _bytes(library, *args)
    err = proc.stderr.decode()
    assert proc.returncode == 2, (args, proc.returncode, err)
    assert err.startswith("picseek: error: ") and err.count("\n") <= 4 and "Traceback" not in err, err


def test_huge_weights_still_rank(library):
    hits = json.loads(run("--library", library["lib"], "search", "1e308:red", "--json", env=library["env"]).stdout)
    small = json.loads(run("--library", library["lib"], "search", "red", "--json", env=library["env"]).stdout)
    assert [h["id"] for h in hits] == [h["id"] for h in small] and len(hits) == len(NAMES)

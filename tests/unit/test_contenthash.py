"""Content hashes (issue 20): BLAKE3 with a kind prefix for new rows, blake2b-128 rows of older libraries still valid.

A library made before keeps working: unchanged files are not read or re-embedded, a moved file that has a legacy
hash is still found as a move, a changed file is re-hashed in the current kind, thumbnails check either kind."""
from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
from pathlib import Path

import pytest
from blake3 import blake3

from picseek import Library
from picseek.ingest import contenthash, images
from picseek.ingest.images import decode_file, file_hash, file_hashes
from picseek.ingest.scan import FileEntry, diff, walk
from picseek.models.base import ImageSpec
from picseek.server import thumbs
from picseek.store.base import FileState

from conftest import ColourEmbedder, draw_photo, make_folder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from broken_images import make_broken_images  # noqa: E402


def _legacy(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def test_current_kind_is_blake3_128_with_its_prefix_and_legacy_is_blake2b_128():
    # BLAKE3's published test vector for "abc", first 128 bits
    assert contenthash.hash_bytes(b"abc") == "b3:6437b3ac38465133ffb63b75273a8db5"
    assert contenthash.hash_bytes(b"abc", contenthash.LEGACY) == _legacy(b"abc")
    assert contenthash.kind_of("b3:00") == contenthash.CURRENT
    assert contenthash.kind_of(_legacy(b"abc")) == contenthash.LEGACY == contenthash.kind_of("")
    h = contenthash.hasher()
    h.update(b"a")
    h.update(b"bc")
    assert h.hexdigest() == contenthash.hash_bytes(b"abc")


def test_matches_either_kind_and_nothing_else():
    data = b"some image bytes"
    assert contenthash.matches(data, contenthash.hash_bytes(data))
    assert contenthash.matches(data, _legacy(data))
    assert contenthash.matches(data, _legacy(data).upper())
    assert not contenthash.matches(data + b"!", contenthash.hash_bytes(data))
    assert not contenthash.matches(data + b"!", _legacy(data))
    assert not contenthash.matches(data, "")


def test_file_hashes_reads_once_in_chunks_and_agrees_with_the_bytes(tmp_path, monkeypatch):
    path = tmp_path / "big.bin"
    data = os.urandom(2_500_000)  # over two read chunks
    path.write_bytes(data)
    monkeypatch.setattr(images, "_CHUNK", 1 << 16)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **kw: opened.append(p) or real_open(p, *a, **kw))
    both = file_hashes(path, (contenthash.CURRENT, contenthash.LEGACY))
    assert len(opened) == 1
    assert both == {contenthash.CURRENT: "b3:" + blake3(data).hexdigest()[:32], contenthash.LEGACY: _legacy(data)}
    assert file_hash(path) == both[contenthash.CURRENT]
    assert file_hash(path, contenthash.LEGACY) == both[contenthash.LEGACY]


def test_decode_file_hashes_good_and_bad_files_in_the_current_kind(tmp_path):
    verdicts = make_broken_images(tmp_path)
    for name, verdict in verdicts.items():
        path = tmp_path / name
        d = decode_file(str(path), ImageSpec(size=32))
        assert (d.error is None) == (verdict == "ok"), (name, d.error)
        assert d.content_hash == contenthash.hash_bytes(path.read_bytes()), name


def test_a_moved_file_matches_a_legacy_row_and_a_current_row(tmp_path):
    a, b, c = make_folder(tmp_path / "old", 3)
    same_size = [p for p in (b, c) if p.stat().st_size == a.stat().st_size]
    new = tmp_path / "new"
    new.mkdir()
    moved_legacy, moved_current = new / "x.jpg", new / "y.jpg"
    moved_legacy.write_bytes(a.read_bytes())
    other = draw_photo("green", "square", seed=5)
    other.save(moved_current, quality=90)
    indexed = {"/gone/a.jpg": FileState(1, "/gone/a.jpg", a.stat().st_size, 1, _legacy(a.read_bytes())),
               "/gone/y.jpg": FileState(2, "/gone/y.jpg", moved_current.stat().st_size, 1,
                                        file_hash(moved_current))}
    for i, p in enumerate(same_size):  # a same-size decoy of the other kind: not matched
        indexed[f"/gone/decoy{i}.jpg"] = FileState(10 + i, f"/gone/decoy{i}.jpg", p.stat().st_size, 1, file_hash(p))
    res = diff(walk([str(new)]), indexed, {})
    got = {path: row for row, path, _, _ in res.moved}
    assert got == {str(moved_legacy): 1, str(moved_current): 2}
    assert res.todo == []


def test_a_same_size_file_with_another_content_is_not_a_move_in_either_kind(tmp_path):
    (a,) = make_folder(tmp_path, 1)
    size = a.stat().st_size
    for stored in (_legacy(b"other"), contenthash.hash_bytes(b"other"), ""):
        res = diff([FileEntry(str(a), size, 1)], {"/o.jpg": FileState(1, "/o.jpg", size, 1, stored)}, {})
        assert res.moved == [] and [e.path for e in res.todo] == [str(a)]


def _downgrade_to_legacy(library: Path) -> int:
    """Make a library look as one indexed before issue 20 did: every hash the blake2b-128 of the file's bytes."""
    with sqlite3.connect(library / "picseek.db") as conn:
        rows = conn.execute("SELECT id, path FROM images").fetchall()
        for i, path in rows:
            conn.execute("UPDATE images SET content_hash = ? WHERE id = ?", (_legacy(Path(path).read_bytes()), i))
    return len(rows)


def _hashes(library: Path) -> dict[str, str]:
    with sqlite3.connect(library / "picseek.db") as conn:
        return {os.path.basename(p): h for p, h in conn.execute("SELECT path, content_hash FROM images")}


def test_a_library_made_with_the_legacy_hash_keeps_working(tmp_path, monkeypatch):
    photos, lib_dir = tmp_path / "photos", tmp_path / "lib"
    make_folder(photos, 4)
    with Library(lib_dir, model=ColourEmbedder()) as lib:
        assert lib.index([photos], workers=0).added == 4
    assert all(h.startswith("b3:") for h in _hashes(lib_dir).values())
    assert _downgrade_to_legacy(lib_dir) == 4
    legacy = _hashes(lib_dir)
    embedded = []
    real = ColourEmbedder.embed_pixels
    monkeypatch.setattr(ColourEmbedder, "embed_pixels", lambda self, px: embedded.append(len(px)) or real(self, px))
    with Library(lib_dir, model=ColourEmbedder()) as lib:
        report = lib.index([photos], workers=0)  # nothing changed: nothing read again, the rows keep their hash
        assert (report.unchanged, report.embedded, embedded) == (4, 0, [])
        assert _hashes(lib_dir) == legacy

        (photos / "img_000.jpg").rename(photos / "renamed.jpg")  # a move of a legacy row: found, not re-embedded
        report = lib.index([photos], workers=0)
        assert (report.moved, report.embedded, report.removed, embedded) == (1, 0, 0, [])
        assert _hashes(lib_dir)["renamed.jpg"] == legacy["img_000.jpg"]  # (still the right hash of its bytes)

        draw_photo("blue", "square", seed=9).save(photos / "img_001.jpg", quality=90)  # changed: new kind
        os.utime(photos / "img_001.jpg", ns=(1, 1))
        report = lib.index([photos], workers=0)
        assert (report.embedded, embedded) == (1, [1])
        now = _hashes(lib_dir)
        assert now["img_001.jpg"] == contenthash.hash_bytes((photos / "img_001.jpg").read_bytes())
        assert {k: v for k, v in now.items() if k != "img_001.jpg"} == {
            "renamed.jpg": legacy["img_000.jpg"], "img_002.jpg": legacy["img_002.jpg"],
            "img_003.jpg": legacy["img_003.jpg"]}


def test_thumbnails_check_both_kinds_and_keep_their_names_apart(tmp_path):
    data = b"\xff\xd8 jpeg bytes"
    thumbs._check_hash(data, _legacy(data))
    thumbs._check_hash(data, contenthash.hash_bytes(data))
    thumbs._check_hash(data, "")  # a row without a hash passes
    for stored in (_legacy(b"x"), contenthash.hash_bytes(b"x")):
        with pytest.raises(thumbs.ContentChanged):
            thumbs._check_hash(data, stored)
    old, new = _legacy(data), contenthash.hash_bytes(data)
    assert thumbs.thumb_path(tmp_path, old, 160) == tmp_path / "thumbs" / old[:2] / f"{old}-160{thumbs.SUFFIX}"
    p = thumbs.thumb_path(tmp_path, new, 160)
    assert p == tmp_path / "thumbs" / new[3:5] / f"b3{new[3:]}-160{thumbs.SUFFIX}"

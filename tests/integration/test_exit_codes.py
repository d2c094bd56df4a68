"""Exit statuses, the same in every command (grep's rule, docs/cli.md "Exit codes"): 0 found or done, 1 nothing
found, 2 a usage or input error, 3 picseek cannot go on, 4 an internal error. Each command is run through the real
entry point (`picseek.cli.main`, which translates errors) in this process, on the ColourEmbedder test double."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from picseek import library as library_module
from picseek.cli import main
from picseek.errors import CANNOT_GO_ON, EXIT_CODES, FOUND, INTERNAL, NOTHING_FOUND, USAGE

from conftest import ColourEmbedder, make_folder


@pytest.fixture
def lib(tmp_path, monkeypatch) -> Path:
    real = library_module.Library
    monkeypatch.setattr(library_module, "Library", lambda path=None, model=None, **kw: real(
        path, ColourEmbedder() if model in (None, "test-colour") else model, **kw))
    photos = tmp_path / "photos"
    make_folder(photos, 3)
    real(tmp_path / "lib", ColourEmbedder()).index([photos], workers=0)
    return tmp_path / "lib"


@pytest.fixture
def picseek(capsys):
    def run(*args) -> tuple[int, str, str]:
        try:
            main([str(a) for a in args])
            status = 0
        except SystemExit as exc:
            status = exc.code or 0
        out, err = capsys.readouterr()
        return status, out, err
    return run


def test_search_and_similar(lib, tmp_path, picseek):
    assert picseek("-L", lib, "search", "red")[0] == FOUND
    assert picseek("-L", lib, "search", "red", "--json")[0] == FOUND
    status, out, err = picseek("-L", lib, "search", "red", "--threshold", "1.01")
    assert (status, out, err) == (NOTHING_FOUND, "No results at or above threshold 1.01.\n", "")
    assert picseek("-L", lib, "search", "red", "--threshold", "1.01", "--json")[:2] == (NOTHING_FOUND, "[]\n")
    status, out, err = picseek("-L", lib, "search", "red", "--where", "width>99999")
    assert (status, out, err) == (NOTHING_FOUND, "", "picseek: no match: no image has width>99999\n")
    assert picseek("-L", lib, "search", "red", "--where", "nonsense")[0] == USAGE
    assert picseek("-L", lib, "search", '"unbalanced')[0] == USAGE
    assert picseek("-L", lib, "search", "./missing.jpg")[0] == USAGE
    assert picseek("-L", lib, "search", "red", "--no-such-option")[0] == USAGE
    assert picseek("-L", tmp_path / "no library here", "search", "red")[0] == CANNOT_GO_ON
    assert picseek("-L", lib, "similar", "1")[0] == FOUND
    assert picseek("-L", lib, "similar", "1", "--threshold", "1.01")[0] == NOTHING_FOUND
    assert picseek("-L", lib, "similar", "999")[0] == USAGE


def test_tags_duplicates_remove(lib, tmp_path, picseek):
    assert picseek("-L", lib, "tag", "list")[0] == NOTHING_FOUND
    assert picseek("-L", lib, "tag", "add", "1", "beach")[0] == FOUND
    assert picseek("-L", lib, "tag", "add", "999", "beach")[0] == USAGE
    assert picseek("-L", lib, "tag", "list")[0] == FOUND
    assert picseek("-L", lib, "duplicates")[0] == NOTHING_FOUND
    assert picseek("-L", lib, "duplicates", "--json")[:2] == (NOTHING_FOUND, "[]\n")
    photos = tmp_path / "photos"
    shutil.copy(photos / "img_000.jpg", photos / "copy.jpg")
    assert picseek("-L", lib, "index", photos, "--workers", "0", "-q")[0] == FOUND
    assert picseek("-L", lib, "duplicates")[0] == FOUND
    assert picseek("-L", lib, "remove", photos / "copy.jpg")[0] == FOUND
    assert picseek("-L", lib, "remove", photos / "copy.jpg")[0] == NOTHING_FOUND


def test_index_metadata_classify_status(lib, tmp_path, picseek):
    photos = tmp_path / "photos"
    assert picseek("-L", lib, "index", tmp_path / "no such folder")[0] == USAGE
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    status, out, _ = picseek("-L", lib, "index", photos, "--workers", "0")
    assert status == FOUND and "1 errors" in out  # a completed run with a bad file: done, the file is reported
    meta = tmp_path / "meta.csv"
    meta.write_text("filename,note\nimg_000.jpg,hello\n")
    assert picseek("-L", lib, "import-metadata", meta)[0] == FOUND
    meta.write_text("filename,note\nnope.jpg,hello\n")
    status, _, err = picseek("-L", lib, "import-metadata", meta)
    assert status == NOTHING_FOUND and "no row matched" in err
    assert picseek("-L", lib, "import-metadata", tmp_path / "missing.csv")[0] == USAGE
    assert picseek("-L", lib, "classify", photos / "img_000.jpg", "--labels", "red,blue")[0] == FOUND
    assert picseek("-L", lib, "classify", photos / "img_000.jpg", photos / "gone.jpg", "--labels", "red,blue")[0] \
        == USAGE
    assert picseek("-L", lib, "status")[0] == FOUND
    assert picseek("-L", lib, "index", photos, "--model", "builtin")[0] == USAGE  # another model than the library's


def test_an_internal_error_is_one_line_with_its_own_status(lib, picseek, monkeypatch):
    def boom(self):
        raise RuntimeError("something impossible\nsecond line")

    monkeypatch.setattr(library_module, "Library", type("Broken", (), {"__init__": lambda self, *a, **k: None,
                                                                        "status": boom}))
    status, out, err = picseek("-L", lib, "status")
    assert status == INTERNAL and out == ""
    assert err == ("picseek: internal error: RuntimeError: something impossible (run again with -v for the "
                   "traceback; please report it)\n")
    status, _, err = picseek("-v", "-L", lib, "status")
    assert status == INTERNAL and "Traceback" in err and "RuntimeError: something impossible" in err


def test_the_documented_table_is_the_one_the_code_uses():
    from pathlib import Path as P

    text = (P(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    for code, meaning in EXIT_CODES.items():
        assert f"| {code} | {meaning} |" in text

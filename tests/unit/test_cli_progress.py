"""Progress on stderr (issue 17): bars only on a terminal; plain, throttled lines in a pipe or a file (no carriage
return ever); nothing with -q or --json."""
from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner

from picseek import library as library_module
from picseek.cli import cli
from picseek.cli.progress import Progress

from conftest import ColourEmbedder, make_folder


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_terminal_gets_bars():
    out = _Terminal()
    with Progress(stream=out) as progress:
        for done in range(0, 11):
            progress.update(done, 10, "indexing", errors=0)
    assert progress.bars and "\r" in out.getvalue() and "%|" in out.getvalue() and "10/10" in out.getvalue()


def test_a_pipe_gets_a_plain_line_every_few_seconds_and_a_last_one():
    out, clock = io.StringIO(), _Clock()
    with Progress(stream=out, every=5, clock=clock) as progress:
        for done in range(0, 501, 10):
            clock.now = done / 50  # 10 s in all
            progress.update(done, 500, "indexing", errors=3 if done > 200 else 0)
    lines = out.getvalue().splitlines()
    assert not progress.bars and "\r" not in out.getvalue() and "%|" not in out.getvalue()
    assert lines == ["indexing: 250/500 images, errors 3", "indexing: 500/500 images, errors 3"]  # (not twice)


def test_a_transient_stage_leaves_no_last_line_and_a_failed_run_none_either():
    out, clock = io.StringIO(), _Clock()
    with Progress(stream=out, clock=clock) as progress:
        progress.callback("tagging")(5, 10)
        progress.note("done tagging")
    assert out.getvalue() == "done tagging\n"
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        with Progress(stream=out, clock=clock) as progress:
            progress.update(5, 10, "indexing")
            raise RuntimeError("disk full")
    assert out.getvalue() == ""


def test_disabled_progress_writes_nothing():
    out = _Terminal()
    with Progress(enabled=False, stream=out) as progress:
        progress.note("Scanning ...")
        progress.update(5, 10, "indexing")
    assert out.getvalue() == ""


@pytest.fixture
def colour_library(monkeypatch):
    real = library_module.Library
    monkeypatch.setattr(library_module, "Library",
                        lambda path=None, model=None, **kw: real(path, ColourEmbedder(), **kw))


def _invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])  # (stderr is not a terminal here)
    assert result.exit_code == 0, result.output
    return result


def test_cli_progress_in_a_pipe_has_no_bar_frames(tmp_path, colour_library, monkeypatch):
    import picseek.cli.progress as progress_module

    monkeypatch.setattr(progress_module, "EVERY", 0)  # a plain line at every step
    photos, lib = tmp_path / "photos", tmp_path / "lib"
    make_folder(photos, 6)
    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue\ngreen\n")
    index = _invoke("-L", lib, "index", photos, "--workers", "0")
    assert "Scanning" in index.stderr and "indexing: 6/6 images" in index.stderr
    outputs = [index, _invoke("-L", lib, "tag", "--labels", labels, "--threshold", 0.5),
               _invoke("-L", lib, "duplicates")]
    assert "tagging: " in outputs[1].stderr and "comparing: " in outputs[2].stderr
    for result in outputs:
        assert "\r" not in result.output and "%|" not in result.output, result.output
    quiet = [_invoke("-q", "-L", lib, "index", photos, "--workers", "0"),
             _invoke("-L", lib, "index", photos, "--workers", "0", "--json"),
             _invoke("-L", lib, "tag", "--labels", labels, "--threshold", 0.5, "--json")]
    assert all(r.stderr == "" for r in quiet)
    assert json.loads(quiet[2].stdout)["labels"] == 3


"""Stress, part 1: `picseek index` on the hostile corpus (tests/stress/hostile_corpus.py) with the built-in model, as a
user runs it. Every good file ends up searchable, every bad one is in `status --errors` with a one-line reason,
nothing else is in either, the run exits 0, and no file name reaches a person's terminal raw."""
from __future__ import annotations

import json

import pytest
import stress_harness as stress
from hostile_corpus import ABSENT, BAD, GOOD, make_corpus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    base = tmp_path_factory.mktemp("stress-index")
    manifest = make_corpus(base / "files", good=6, lean=True)
    env = stress.stress_env(base, tmp_path_factory.getbasetemp() / "picseek-cache")
    lib = base / "lib"
    run = stress.picseek(*stress.index_cmd(lib, manifest.root, "--json"), env=env)
    return manifest, lib, env, run, stress.library_state(lib)


def test_index_run_exits_0_with_a_json_summary(indexed):
    manifest, _lib, _env, run, _state = indexed
    assert run.returncode == 0, f"picseek index exited {run.returncode}:\n{stress.tail(run.stderr)}"
    report = json.loads(run.stdout)
    assert report["added"] == len(manifest.paths(GOOD)), report
    assert report["errors"] >= len(manifest.paths(BAD)), report


def test_every_good_file_is_in_the_library_and_nothing_else(indexed):
    manifest, _lib, _env, _run, state = indexed
    problems = stress.check_manifest(manifest, state)
    found = problems["good missing"] + problems["unexpected image"]
    assert not found, stress.capped(found)


def test_every_bad_file_is_an_error_with_a_one_line_reason_and_nothing_else(indexed):
    manifest, _lib, _env, _run, state = indexed
    problems = stress.check_manifest(manifest, state)
    found = problems["bad missing"] + problems["bad reason"] + problems["unexpected error"]
    assert not found, stress.capped(found)


def test_status_errors_lists_every_bad_file(indexed):
    manifest, lib, env, _run, _state = indexed
    res = stress.picseek("--library", lib, "status", "--errors", "--json", env=env)
    assert res.returncode == 0, stress.tail(res.stderr)
    listed = {stress.os_path(e["path"]): e["reason"] for e in json.loads(res.stdout)["error_list"]}
    missing = sorted(manifest.paths(BAD) - listed.keys())
    extra = sorted(listed.keys() - manifest.paths(BAD) - manifest.paths(ABSENT))
    problems = [f"not listed: {manifest.describe(p)}" for p in missing] + \
               [f"listed but not bad: {manifest.describe(p)}" for p in extra] + \
               [f"empty reason: {manifest.describe(p)}" for p, r in listed.items() if not str(r).strip()]
    assert not problems, stress.capped(problems)


def test_every_good_file_is_searchable(indexed):
    manifest, lib, env, _run, _state = indexed
    res = stress.picseek("--library", lib, "search", "a photo", "--json", "--limit", "100000", "--no-keywords", env=env)
    assert res.returncode == 0, f"picseek search exited {res.returncode}:\n{stress.tail(res.stderr)}"
    hits = {stress.os_path(h["path"]) for h in json.loads(res.stdout)}
    problems = [f"not found by search: {manifest.describe(p)}" for p in sorted(manifest.paths(GOOD) - hits)] + \
               [f"found by search but must not be: {manifest.describe(p)}" for p in sorted(hits - manifest.paths(GOOD))]
    assert not problems, stress.capped(problems)


def test_no_file_name_reaches_the_terminal_raw(indexed):
    """Tables, error lists, index summaries and --paths are for people: a name's escape sequences, line breaks and
    undecodable bytes must come out escaped, one line per file."""
    manifest, lib, env, _run, state = indexed
    problems = []
    status = stress.picseek("--library", lib, "status", "--errors", env=env)
    problems += stress.raw_controls(status.stdout, "status --errors stdout")
    problems += stress.raw_controls(status.stderr, "status --errors stderr")
    listed = [line for line in status.stdout.split(b"\n") if line.startswith(b"  ")]
    if len(listed) != len(state.errors):
        problems.append(f"status --errors: {len(listed)} indented lines for {len(state.errors)} errors "
                        "(a name with a line break printed raw splits its line)")
    again = stress.picseek("-q", *stress.index_cmd(lib, manifest.root, "--retry-errors"), env=env)
    problems += stress.raw_controls(again.stdout, "index --retry-errors stdout")
    problems += stress.raw_controls(again.stderr, "index --retry-errors stderr")
    for args in (("search", "pwned bad utf8 name", "--limit", "500"),
                 ("search", "pwned bad utf8 name", "--limit", "500", "--paths")):
        res = stress.picseek("--library", lib, *args, env=env)
        problems += stress.raw_controls(res.stdout, " ".join(args[3:]) or "search table")
        problems += stress.raw_controls(res.stderr, f"{' '.join(args)} stderr")
        if res.returncode != 0:
            problems.append(f"picseek {' '.join(args)} exited {res.returncode}: {stress.tail(res.stderr, 300)}")
    assert not problems, stress.capped(problems)

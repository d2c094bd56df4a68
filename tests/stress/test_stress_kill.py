"""Stress, part 2: index runs on the hostile corpus killed with SIGKILL at random points (the main process only, as the
OOM killer does), then run to completion. The result must equal a clean run into another library (same images, same
errors with the same reasons, same row counts), the database must pass `PRAGMA integrity_check` after every kill, and
a killed run must leave no process behind (its session, started with start_new_session, must empty by itself)."""
from __future__ import annotations

import os
import random

import pytest
import stress_harness as stress
from hostile_corpus import BAD, GOOD, make_corpus

pytestmark = pytest.mark.slow
KILLS = 3
SEED = int(os.environ.get("PICSEEK_STRESS_SEED", "1313"))
RUN_ARGS = ("--batch-size", "4", "--workers", "2")  # small batches: many commits to land between; real workers


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    base = tmp_path_factory.mktemp("stress-kill")
    manifest = make_corpus(base / "files", good=6, lean=True, seed=3)
    env = stress.stress_env(base, tmp_path_factory.getbasetemp() / "picseek-cache")
    clean_lib, killed_lib = base / "clean", base / "killed"
    clean = stress.picseek(*stress.index_cmd(clean_lib, manifest.root, *RUN_ARGS), env=env)
    files = len(manifest.paths(GOOD)) + len(manifest.paths(BAD))
    rounds = stress.kill_rounds(killed_lib, manifest.root, env, KILLS, random.Random(SEED), files, RUN_ARGS)
    final = stress.picseek(*stress.index_cmd(killed_lib, manifest.root, *RUN_ARGS), env=env)
    return {"clean": clean, "final": final, "rounds": rounds, "clean_state": stress.library_state(clean_lib),
            "killed_state": stress.library_state(killed_lib), "killed_lib": killed_lib}


def test_some_kills_landed_mid_run(killed):
    rounds = killed["rounds"]
    ended = [f"run {k + 1} ended by itself with exit code {r.exit_code} after {r.delay} s (rows {r.rows_before} -> "
             f"{r.rows_after})" for k, r in enumerate(rounds)]
    assert any(r.landed for r in rounds), f"every run ended before its kill (seed {SEED}):\n" + "\n".join(ended)


def test_a_killed_run_leaves_no_process_behind(killed):
    problems = [f"kill {k + 1} (after {r.delay} s): {len(r.orphans)} process(es) of the killed run still alive "
                f"5 s later: " + " | ".join(r.orphans) for k, r in enumerate(killed["rounds"]) if r.orphans]
    assert not problems, stress.capped(problems) + f"\n(seed {SEED})"


def test_the_database_is_intact_after_every_kill(killed):
    problems = [f"kill {k + 1} (after {r.delay} s): integrity_check says {r.integrity!r}"
                for k, r in enumerate(killed["rounds"]) if r.integrity not in ("ok", "no database")]
    final = stress.integrity_check(killed["killed_lib"])
    if final != "ok":
        problems.append(f"after the final run: {final!r}")
    assert not problems, stress.capped(problems)


def test_the_runs_after_the_kills_complete_and_equal_a_clean_run(killed):
    for name in ("clean", "final"):
        run = killed[name]
        assert run.returncode == 0, f"the {name} index run exited {run.returncode}:\n{stress.tail(run.stderr)}"
    diff = killed["killed_state"].diff(killed["clean_state"])
    assert not diff, stress.capped(diff) + f"\n(seed {SEED}; kills: {killed['rounds']})"

"""The standing stress run (issue 13) at full size: the hostile corpus of tests/stress/hostile_corpus.py (~1,000 files),
indexed with the CLI and checked against its manifest, 20 index runs killed with SIGKILL at random points then resumed
and compared with a clean run, and ~400 hostile HTTP requests against `picseek serve`. It prints figures (files,
good/bad, kills survived, hostile requests, 5xx, leaks, orphans) and the problems it found; it asserts nothing (this is
not a test: tests/stress/ runs the same checks at CI size and asserts).

    python benchmarks/stress.py                      # ~1,000 files, 20 kills, ~400 requests (~10-20 min on 2 cores)
    python benchmarks/stress.py --quick              # the CI sizes: ~120 files, 3 kills, the lean battery
    python benchmarks/stress.py --kills 50 --seed 7 --fuzz 300 --giant-sparse

Everything runs offline with the built-in model under --out (default bench-out/stress, emptied first), HF_HUB_OFFLINE=1;
the server listens on 127.0.0.1 only. The same seed gives the same corpus, kill points and fuzz requests.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests" / "stress"), str(HERE.parent / "tests")]
import stress_harness as stress  # noqa: E402
from hostile_corpus import BAD, GOOD, make_corpus  # noqa: E402  (the generator the tests use)

FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
         "amx_tile", "amx_bf16", "amx_int8", "sha_ni")
RUN_ARGS = ("--batch-size", "8")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu() -> tuple[str, str]:
    """The CPU's model name and the SIMD flags that decide model speed (from /proc/cpuinfo)."""
    name, flags = "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name == "?":
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return name, " ".join(f for f in FLAGS if f in flags) or "none of " + ",".join(FLAGS)


def show(problems: list[str], limit: int) -> None:
    for line in problems[:limit]:
        print(f"    {line}")
    if len(problems) > limit:
        print(f"    ... and {len(problems) - limit} more")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--good", type=int, default=375, help="plain photos besides the hostile sets (default 375)")
    ap.add_argument("--copies", type=int, default=4, help="copies of the hostile sets, ~156 files each (default 4)")
    ap.add_argument("--kills", type=int, default=20, help="index runs killed with SIGKILL (default 20)")
    ap.add_argument("--fuzz", type=int, default=60, help="random hostile requests on top of the battery (default 60)")
    ap.add_argument("--names", type=int, default=40, help="files with hostile names served (default 40)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--giant-sparse", action="store_true", help="add a 2.5 GB sparse file named .jpg")
    ap.add_argument("--quick", action="store_true", help="the CI sizes: 6 photos, 1 lean set, 3 kills, no fuzz")
    ap.add_argument("--show", type=int, default=15, help="problems listed per check (default 15)")
    ap.add_argument("--out", type=Path, default=HERE.parent / "bench-out" / "stress")
    args = ap.parse_args(argv)
    lean = args.quick
    if args.quick:
        args.good, args.copies, args.kills, args.fuzz = 6, 1, 3, 0

    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    env = stress.stress_env(args.out, args.out / "cache")
    os.environ.update(HF_HUB_OFFLINE="1", PICSEEK_CACHE_DIR=str(args.out / "cache"))
    import picseek

    name, flags = cpu()
    print("# picseek stress run\n")
    print(f"date {dt.datetime.now().isoformat(sep=' ', timespec='seconds')}; {name}; CPU flags: {flags}; "
          f"nproc {os.cpu_count()} (affinity {len(os.sched_getaffinity(0))}); load average {os.getloadavg()[0]:.2f}; "
          f"Python {platform.python_version()}; picseek {picseek.__version__}; uid {os.geteuid()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")

    # -- the corpus -------------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    m = make_corpus(args.out / "files", good=args.good, copies=args.copies, seed=args.seed, lean=lean,
                    giant_sparse=args.giant_sparse)
    counts = m.counts()
    files = counts[GOOD] + counts[BAD]
    log(f"corpus: {sum(counts.values())} entries in {time.perf_counter() - t0:.1f} s: {counts}")

    # -- 1. index and check the manifest -----------------------------------------------------------------------------
    clean_lib = args.out / "clean"
    t0 = time.perf_counter()
    clean = stress.picseek(*stress.index_cmd(clean_lib, m.root, *RUN_ARGS), env=env, timeout=3600)
    index_s = time.perf_counter() - t0
    clean_state = stress.library_state(clean_lib)
    problems = stress.check_manifest(m, clean_state)
    log(f"clean index: exit {clean.returncode} in {index_s:.1f} s")

    # -- 2. kills ----------------------------------------------------------------------------------------------------
    killed_lib = args.out / "killed"
    t0 = time.perf_counter()
    rounds = stress.kill_rounds(killed_lib, m.root, env, args.kills, random.Random(args.seed), files, RUN_ARGS, log=log)
    final = stress.picseek(*stress.index_cmd(killed_lib, m.root, *RUN_ARGS), env=env, timeout=3600)
    kill_s = time.perf_counter() - t0
    killed_state = stress.library_state(killed_lib)
    diff = killed_state.diff(clean_state)
    orphans = [f"kill {k + 1}: {o}" for k, r in enumerate(rounds) for o in r.orphans]
    broken = [f"kill {k + 1}: {r.integrity}" for k, r in enumerate(rounds) if r.integrity not in ("ok", "no database")]
    survived = sum(1 for r in rounds if not r.orphans and r.integrity in ("ok", "no database"))
    final_integrity = stress.integrity_check(killed_lib)

    # -- 3. the HTTP battery (on the clean library; the symlink swap changes the corpus, so it comes last) ---------
    battery = None
    t0 = time.perf_counter()
    stress.picseek(*stress.index_cmd(clean_lib, stress.plain_roots(m)), env=env)  # a no-op where the clean run worked
    try:
        server = stress.Server(clean_lib, env, "--max-upload-mb", "1", "--max-upload-mp", "4")
    except RuntimeError as exc:
        log(f"the server did not start: {exc}")
    else:
        try:
            battery = stress.Battery(server, m.secrets, budget_s=1800)
            target = stress.Target(m, stress.ids_by_path(clean_lib), name_limit=None if lean else args.names)
            for category, send in stress.CATEGORIES.items():
                if category != "symlink swap":
                    send(battery, target, lean)
            stress.fuzz(battery, target, args.fuzz, args.seed)
            stress.CATEGORIES["symlink swap"](battery, target, lean)
            battery.request("after", "GET", "/api/status", expect=(200,))
            server_alive = server.alive()
        finally:
            server.stop()
    http_s = time.perf_counter() - t0

    # -- figures -----------------------------------------------------------------------------------------------------
    summary = battery.summary() if battery else {"requests": 0, "5xx": 0, "no answer": 0, "leaks": 0, "unexpected": 0}
    good_ok = len(m.paths(GOOD) & clean_state.images.keys())
    bad_ok = len({p for p in m.paths(BAD) & clean_state.errors.keys() if clean_state.errors[p].strip()})
    landed = sum(r.landed for r in rounds)
    print("| figure | value |\n|---|---:|")
    print(f"| files (good + bad; plus {counts['ignored']} ignored, {counts['absent']} links/FIFOs) | {files} |")
    print(f"| good files indexed / expected | {good_ok} / {counts[GOOD]} |")
    print(f"| bad files reported with a reason / expected | {bad_ok} / {counts[BAD]} |")
    print(f"| unexpected images / unexpected error rows | {len(problems['unexpected image'])} / "
          f"{len(problems['unexpected error'])} |")
    print(f"| clean index: exit code, seconds, good files/s | {clean.returncode}, {index_s:.1f}, "
          f"{counts[GOOD] / index_s:.1f} |")
    print(f"| kills sent / landed mid-run | {len(rounds)} / {landed} |")
    print(f"| kills survived (no orphan, integrity ok) | {survived} / {len(rounds)} |")
    print(f"| orphan processes after kills | {len(orphans)} |")
    print(f"| integrity failures after kills / after the final run | {len(broken)} / "
          f"{'0' if final_integrity == 'ok' else final_integrity} |")
    print(f"| resumed run: exit code; differences from the clean run | {final.returncode}; {len(diff)} |")
    print(f"| kill phase seconds | {kill_s:.1f} |")
    print(f"| hostile requests | {summary['requests']} |")
    print(f"| 5xx answers | {summary['5xx']} |")
    print(f"| no answer | {summary['no answer']} |")
    print(f"| leaks (a secret's bytes or picture in a body) | {summary['leaks']} |")
    print(f"| unexpected statuses (not 5xx) | {summary['unexpected']} |")
    print(f"| server alive after the battery | {'yes' if battery and server_alive else 'no'} |")
    print(f"| HTTP phase seconds | {http_s:.1f} |")
    if battery:
        print("\n| category | requests | problems |\n|---|---:|---:|")
        for category in [*stress.CATEGORIES, "fuzz", "after"]:
            if battery.count(category):
                print(f"| {category} | {battery.count(category)} | {len(battery.failures(category))} |")

    print("\nproblems:")
    if clean.returncode:
        print(f"  clean index run exited {clean.returncode}: {stress.tail(clean.stderr, 600)!r}")
    if final.returncode:
        print(f"  resumed index run exited {final.returncode}: {stress.tail(final.stderr, 600)!r}")
    for kind, found in problems.items():
        if found:
            print(f"  manifest, {kind}: {len(found)}")
            show(found, args.show)
    for label, found in (("orphans", orphans), ("integrity", broken), ("killed vs clean", diff)):
        if found:
            print(f"  {label}: {len(found)}")
            show(found, args.show)
    if battery and battery.failures():
        print(f"  HTTP: {len(battery.failures())}")
        show(battery.failures(), args.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Running the CLI as a user does: a subprocess with its own config, cache and default library, hub off."""
from __future__ import annotations

import os
import subprocess
import sys

PICSEEK = [sys.executable, "-m", "picseek.cli"]


def run(*args, env=None, check=True, cwd=None, timeout=300, input_text=None) -> subprocess.CompletedProcess:
    proc = subprocess.run(PICSEEK + [str(a) for a in args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=cwd, input=input_text)
    if check and proc.returncode != 0:
        raise AssertionError(f"picseek {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def cli_env(base) -> dict[str, str]:
    """Environment for CLI subprocesses whose state lives under `base`."""
    return dict(os.environ, HF_HUB_OFFLINE="1", PICSEEK_CACHE_DIR=str(base / "cache"),
                PICSEEK_CONFIG=str(base / "config.toml"), PICSEEK_LIBRARY=str(base / "default-lib"))


def kill_when(proc: subprocess.Popen, database, sql: str, at_least: int, timeout: float = 240) -> None:
    """SIGKILL a running CLI process as soon as `sql` (a count) on its library's database reaches `at_least`;
    fails when the run ends first (the work was too small to be killed midway)."""
    import signal
    import sqlite3
    import time

    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            n = sqlite3.connect(database, timeout=5).execute(sql).fetchone()[0]
        except sqlite3.OperationalError:
            n = 0
        if n >= at_least:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; give it more to do"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

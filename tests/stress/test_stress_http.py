"""Stress, part 3: a hostile HTTP battery against `picseek serve` (a real process on a free port of 127.0.0.1, a token
required for writes, 1 MB / 4 MP upload limits) serving the hostile corpus. Path traversal in every path parameter,
indexed files swapped for symlinks to secrets outside the folder, huge and negative ids, decompression-bomb and
oversized uploads, bad and doubled Host headers, the token and Origin rules for writes, malformed JSON, wrong content
types. No answer may be a 5xx, a missing answer, or carry a secret's bytes or picture; each category also has the
statuses it must answer with (stress_harness.py)."""
from __future__ import annotations

import pytest
import stress_harness as stress
from hostile_corpus import make_corpus

pytestmark = pytest.mark.slow
pytest.importorskip("uvicorn", reason="the server extra is not installed: pip install -e '.[test,server]'")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("stress-http")
    manifest = make_corpus(base / "files", good=6, lean=True, seed=5)
    env = stress.stress_env(base, tmp_path_factory.getbasetemp() / "picseek-cache")
    lib = base / "lib"
    # the plain photos first, so that there is something to serve even where the whole run fails (part 1's business)
    stress.picseek(*stress.index_cmd(lib, stress.plain_roots(manifest)), env=env)
    run = stress.picseek(*stress.index_cmd(lib, manifest.root), env=env)
    ids = stress.ids_by_path(lib) if (lib / "picseek.db").exists() else {}
    if not ids:
        pytest.fail(f"nothing was indexed to serve (index exited {run.returncode}):\n{stress.tail(run.stderr)}")
    server = stress.Server(lib, env, "--max-upload-mb", "1", "--max-upload-mp", "4")
    battery = stress.Battery(server, manifest.secrets, budget_s=240)
    try:
        yield battery, stress.Target(manifest, ids)
    finally:
        server.stop()


@pytest.mark.parametrize("category", list(stress.CATEGORIES))
def test_hostile_requests_get_4xx_or_their_answer_never_5xx_or_a_secret(served, category):
    battery, target = served
    stress.CATEGORIES[category](battery, target, True)
    assert battery.count(category) > 0
    failures = battery.failures(category)
    assert not failures, stress.capped(failures) + _server_log(battery, failures)


def test_the_server_survived_the_battery_with_no_5xx_and_no_leak(served):
    battery, _target = served
    alive = battery.request("after", "GET", "/api/status", expect=(200,))
    assert battery.server.alive() and alive.status == 200, battery.server.stderr()[-3000:]
    summary = battery.summary()
    assert summary["requests"] >= 100, summary
    assert summary["5xx"] == 0 and summary["leaks"] == 0 and summary["no answer"] == 0, summary


def _server_log(battery: stress.Battery, failures: list[str]) -> str:
    if not any("server error" in f or "no answer" in f for f in failures):
        return ""
    return "\n--- server log (tail) ---\n" + battery.server.stderr()[-3000:]

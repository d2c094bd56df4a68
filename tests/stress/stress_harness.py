"""What the stress tests and benchmarks/stress.py share: the CLI run as a user runs it (bytes out: file names need not
be UTF-8), the library read back (paths as OS bytes), the manifest check, SIGKILL rounds with an orphan scan of
/proc, and a hostile HTTP battery against `picseek serve` on 127.0.0.1 that records every answer.

Every check returns a list of problems (one line each, odd bytes escaped) instead of asserting, so that a test
reports all of them at once and the benchmark can count them.
"""
from __future__ import annotations

import http.client
import io
import json
import os
import random
import re
import select
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import hostile_corpus as hc
from hostile_corpus import ABSENT, BAD, GOOD, SECRET_MARK, SECRET_RGB, Manifest

from cli_helpers import PICSEEK, cli_env

MODEL = "builtin"
TOKEN = "stress-token-0123456789abcdef"
SHOWN_LIMIT = 40  # problems listed per check; the rest are counted


def os_path(reported: str) -> bytes:
    """A path as the library reports it (the Python API, JSON output) -> the bytes the OS has for it. The API gives
    OS paths: a name that is not UTF-8 carries its bytes as lone surrogates (os.fsdecode), which this turns back."""
    try:
        return os.fsencode(reported)
    except UnicodeEncodeError:  # a surrogate that no OS byte gives: cannot be a real file name
        return reported.encode("utf-8", "surrogatepass")


def capped(problems: list[str], limit: int = SHOWN_LIMIT) -> str:
    shown = problems[:limit]
    more = f"\n... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{len(problems)} problem(s):\n" + "\n".join(shown) + more


# -- the CLI -----------------------------------------------------------------------------------------------------------
def stress_env(base: Path, cache: Path | None = None) -> dict[str, str]:
    """cli_env with a shared cache (the built-in model's 1000 class embeddings are computed once per cache), no token
    from the caller's environment, and UTF-8 output."""
    env = cli_env(base)
    if cache is not None:
        env["PICSEEK_CACHE_DIR"] = str(cache)
    env.pop("PICSEEK_TOKEN", None)
    env.update(PYTHONIOENCODING="utf-8", LC_ALL="C.UTF-8", COLUMNS="120")
    return env


def picseek(*args, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """One CLI process; stdout/stderr as bytes (a file name need not be UTF-8, and escapes must be seen raw)."""
    return subprocess.run(PICSEEK + [a if isinstance(a, bytes) else str(a) for a in args], capture_output=True,
                          env=env, timeout=timeout)


def index_cmd(lib: Path, roots: bytes | list[bytes], *extra: str) -> list:
    """`--library LIB index ROOT... --model builtin EXTRA...` (the roots as bytes: any name the OS has)."""
    return ["--library", str(lib), "index", *([roots] if isinstance(roots, bytes) else roots), "--model", MODEL, *extra]


def tail(data: bytes, n: int = 1500) -> str:
    text = data.decode("utf-8", "backslashreplace")
    return text[-n:]


# -- the library, read back --------------------------------------------------------------------------------------------
@dataclass
class LibraryState:
    images: dict[bytes, str]  # OS path -> content hash
    errors: dict[bytes, str]  # OS path -> reason
    counts: dict[str, int]  # rows per table, vectors per space
    integrity: str

    def diff(self, other: LibraryState, name: str = "killed", other_name: str = "clean") -> list[str]:
        out = []
        for label, mine, theirs in (("images", self.images, other.images), ("errors", self.errors, other.errors)):
            for p in sorted(mine.keys() - theirs.keys()):
                out.append(f"{label}: only in {name}: {p!r}")
            for p in sorted(theirs.keys() - mine.keys()):
                out.append(f"{label}: only in {other_name}: {p!r}")
            for p in sorted(mine.keys() & theirs.keys()):
                if mine[p] != theirs[p]:
                    out.append(f"{label}: {p!r}: {name} {mine[p]!r} != {other_name} {theirs[p]!r}")
        for key in sorted(self.counts.keys() | other.counts.keys()):
            if self.counts.get(key) != other.counts.get(key):
                out.append(f"rows of {key}: {name} {self.counts.get(key)} != {other_name} {other.counts.get(key)}")
        return out


def integrity_check(lib: Path) -> str:
    db = lib / "picseek.db"
    if not db.exists():
        return "no database"
    conn = sqlite3.connect(db, timeout=30)
    try:
        return "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check").fetchall())
    except sqlite3.DatabaseError as exc:
        return f"cannot check: {exc}"
    finally:
        conn.close()


def library_state(lib: Path) -> LibraryState:
    """Images and errors through the Python API (picseek.Library), row counts and integrity straight from SQLite."""
    from picseek import Library

    if not (lib / "picseek.db").exists():
        return LibraryState({}, {}, {}, "no database")
    with Library(lib, create=False) as library:
        states = library.store.file_states([])
        images = {os_path(p): s.content_hash for p, s in states.items()}
        errors = {os_path(e["path"]): e["reason"] for e in library.errors()}
    conn = sqlite3.connect(lib / "picseek.db", timeout=30)
    try:
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("images", "vectors", "errors", "tags", "fields")}
        counts.update({f"vectors[{s}]": n for s, n in
                       conn.execute("SELECT space, count(*) FROM vectors GROUP BY space")})
    finally:
        conn.close()
    return LibraryState(images, errors, counts, integrity_check(lib))


def ids_by_path(lib: Path) -> dict[bytes, int]:
    from picseek import Library

    with Library(lib, create=False) as library:
        return {os_path(p): s.id for p, s in library.store.file_states([]).items()}


def check_manifest(m: Manifest, state: LibraryState) -> dict[str, list[str]]:
    """Problems by kind: good files not indexed, bad files not reported (or reported without a one-line reason), and
    anything indexed or reported that should not be."""
    problems: dict[str, list[str]] = {"good missing": [], "bad missing": [], "bad reason": [], "unexpected image": [],
                                      "unexpected error": []}
    good, bad, absent = m.paths(GOOD), m.paths(BAD), m.paths(ABSENT)
    for p in sorted(good - state.images.keys()):
        why = f" (recorded as an error: {state.errors[p]!r})" if p in state.errors else ""
        problems["good missing"].append(f"good file not in the library: {m.describe(p)}{why}")
    for p in sorted(bad - state.errors.keys()):
        why = " (indexed as an image instead)" if p in state.images else ""
        problems["bad missing"].append(f"bad file not in the errors: {m.describe(p)}{why}")
    for p in sorted(bad & state.errors.keys()):
        reason = state.errors[p]
        if not reason or not reason.strip() or "\n" in reason or "Traceback" in reason:
            problems["bad reason"].append(f"bad file without a one-line reason: {m.describe(p)}: {reason!r}")
    for p in sorted(state.images.keys() - good):
        problems["unexpected image"].append(f"in the library but must not be: {m.describe(p)}")
    for p in sorted(state.errors.keys() - bad - absent):
        problems["unexpected error"].append(f"in the errors but must not be: {m.describe(p)}: {state.errors[p]!r}")
    return problems


# -- human output ------------------------------------------------------------------------------------------------------
# C0 controls but tab and line feed, DEL, C1 controls (UTF-8), bidi overrides and isolates, U+2028/2029
_RAW_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8-\xae]|\xe2\x81[\xa6-\xa9]")


def raw_controls(output: bytes, what: str) -> list[str]:
    """Control characters and bytes that are not UTF-8 in output meant for a person (each with its context)."""
    out = []
    for m in _RAW_CONTROL.finditer(output):
        out.append(f"{what}: raw {m.group()!r} at byte {m.start()}: ...{output[max(0, m.start() - 30):m.end() + 10]!r}")
    try:
        output.decode("utf-8")
    except UnicodeDecodeError as exc:
        context = output[max(0, exc.start - 30):exc.end + 10]
        out.append(f"{what}: bytes that are not UTF-8 at {exc.start}: ...{context!r}")
    return out


# -- SIGKILL rounds ----------------------------------------------------------------------------------------------------
def session_processes(sid: int) -> list[str]:
    """Live (not zombie) processes whose session id is `sid`: 'pid state cmdline'."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
            fields = stat[stat.rindex(b")") + 2:].split()
            state, session = fields[0].decode(), int(fields[3])
            if session != sid or state == "Z":
                continue
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except (OSError, ValueError, IndexError):
            continue
        found.append(f"{entry} {state} {cmd.strip()[:160]}")
    return found


def reap_session(sid: int, grace: float) -> list[str]:
    """Wait up to `grace` s for the session's processes to exit by themselves; return those still alive (the orphans)
    and then SIGKILL them by pid (they are ours: the session was started by this harness)."""
    deadline = time.monotonic() + grace
    left = session_processes(sid)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = session_processes(sid)
    for line in left:
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    end = time.monotonic() + 10
    while session_processes(sid) and time.monotonic() < end:
        time.sleep(0.1)
    return left


@dataclass
class KillRound:
    delay: float
    landed: bool  # the run was still going when it was killed
    rows_before: int
    rows_after: int
    orphans: list[str]
    integrity: str
    exit_code: int  # -9 when the kill landed; else how the run ended by itself (0, or a crash)


def rows_done(lib: Path) -> int:
    try:
        conn = sqlite3.connect(lib / "picseek.db", timeout=5)
        try:
            return sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("images", "errors"))
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def kill_rounds(lib: Path, root: bytes, env: dict, rounds: int, rng: random.Random, total_files: int,
                extra: Iterable[str] = (), grace: float = 5.0, early_share: float = 0.2, max_run_s: float = 300,
                log: Callable[[str], None] = lambda s: None) -> list[KillRound]:
    """`rounds` index runs into `lib`, each SIGKILLed (the main process only, as the OOM killer or a closed laptop
    would) at a random point: with probability `early_share` at a random moment of its first 2 s (start-up, scan,
    model load), else once a random share of the files left is committed (on average 1/(rounds left + 1) of them, so
    the kills spread over the whole corpus), plus up to 0.3 s (mid-batch). `total_files`: the good and bad files.
    After each kill, the processes left in the run's session (start_new_session) are the orphans."""
    out = []
    for i in range(rounds):
        before = rows_done(lib)
        early = rng.random() < early_share
        share = min(0.9, max(0.01, rng.uniform(0.0, 2.0 / (rounds - i + 1))))  # kills spread over the whole corpus
        target = before + max(1, round(share * max(0, total_files - before)))
        t0 = time.monotonic()
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(PICSEEK + index_cmd(lib, root, *extra), stdout=subprocess.DEVNULL, stderr=err,
                                    env=env, start_new_session=True)
            if early:
                _wait(proc, rng.uniform(0.05, 2.0))
            else:
                while proc.poll() is None and rows_done(lib) < target and time.monotonic() - t0 < max_run_s:
                    time.sleep(0.05)
                _wait(proc, rng.uniform(0.0, 0.3))
            landed = proc.poll() is None
            if landed:
                os.kill(proc.pid, signal.SIGKILL)
            code = proc.wait(timeout=60)
            delay = time.monotonic() - t0
            orphans = reap_session(proc.pid, grace)
        rnd = KillRound(round(delay, 2), landed, before, rows_done(lib), orphans, integrity_check(lib), code)
        log(f"kill {i + 1}/{rounds}: after {rnd.delay:.2f} s ({'start-up' if early else f'at {target} rows'}), "
            f"landed={landed} (exit {code}), rows {before} -> {rnd.rows_after}, orphans {len(orphans)}, "
            f"integrity {rnd.integrity}")
        out.append(rnd)
    return out


def _wait(proc: subprocess.Popen, seconds: float) -> None:
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pass


# -- the HTTP battery --------------------------------------------------------------------------------------------------
@dataclass
class Answer:
    category: str
    label: str
    status: int | None  # None: no answer (connection closed, timeout)
    content_type: str
    body: bytes
    problems: list[str] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)


class Server:
    """`picseek serve` as a user runs it, on a free port of 127.0.0.1, with a token required for writes."""

    def __init__(self, lib: Path, env: dict, *args: str, timeout: float = 120):
        env = dict(env, PICSEEK_TOKEN=TOKEN)
        cmd = PICSEEK + ["--library", str(lib), "serve", "--port", "0", "--no-index", "--require-token", *args]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        self.log: list[bytes] = []
        ready, _, _ = select.select([self.proc.stderr], [], [], timeout)  # its first line names the URL
        line = self.proc.stderr.readline() if ready else b"(nothing on stderr within the time limit)"
        self.log.append(line)
        match = re.search(rb"http://127\.0\.0\.1:(\d+)/", line)
        if not match:
            self.stop()
            raise RuntimeError(f"picseek serve did not start: {line!r} {b''.join(self.log)[-2000:]!r}")
        self.port = int(match.group(1))
        self.host = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/api/status")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"picseek serve did not answer: {self.stderr()[-2000:]}")
            time.sleep(0.2)

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line)

    def stderr(self) -> str:
        return b"".join(self.log).decode("utf-8", "backslashreplace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        reap_session(self.proc.pid, 2.0)


def _image_is_secret(body: bytes) -> bool:
    """True when an image answer shows the secret picture (flat magenta; corpus photos are noisy)."""
    from PIL import Image, ImageStat

    try:
        with Image.open(io.BytesIO(body)) as img:
            stat = ImageStat.Stat(img.convert("RGB"))
    except Exception:  # noqa: BLE001 - not an image: nothing to compare
        return False
    mean, std = stat.mean, stat.stddev
    return max(abs(a - b) for a, b in zip(mean, SECRET_RGB)) < 40 and max(std) < 25


class Battery:
    """Sends requests to one server and records every answer with its problems: no answer, a 5xx, a status outside
    the expected ones, an error without a JSON body, a secret's bytes or picture in the body. Bounded: `budget_s`
    for the whole battery, `timeout` per request."""

    def __init__(self, server: Server, secrets: Iterable[bytes], budget_s: float = 300, timeout: float = 30):
        self.server = server
        self.secret_bytes = [Path(os.fsdecode(p)).read_bytes() for p in secrets]
        self.deadline = time.monotonic() + budget_s
        self.timeout = timeout
        self.answers: list[Answer] = []

    # sending
    def request(self, category: str, method: str, path: str, *, headers: dict | None = None, body: bytes | None = None,
                expect: Iterable[int] | None = None, host: str | None = None, label: str | None = None,
                json_error: bool = True) -> Answer:
        label = label or f"{method} {path[:140]}"
        if time.monotonic() > self.deadline:
            return self._record(Answer(category, label, None, "", b"", ["not sent: the battery's time budget ran out"]))
        headers = dict(headers or {})
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=self.timeout)
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host if host is not None else self.server.host)
            if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k in headers):
                headers["Content-Length"] = str(len(body))
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.endheaders(body)
            res = conn.getresponse()
            data = res.read()
            answer = Answer(category, label, res.status, res.getheader("content-type", ""), data,
                            headers=res.getheaders())
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            answer = Answer(category, label, None, "", b"", [f"no answer: {type(exc).__name__}: {exc}"])
        return self._record(answer, expect, json_error)

    def raw(self, category: str, label: str, data: bytes, expect: Iterable[int] | None = None) -> Answer:
        """Bytes straight onto a socket (what http.client refuses to send: two Host headers, bad framing). The HTTP
        layer (uvicorn) may refuse bad framing before the app sees it: its plain-text 400 is accepted."""
        if time.monotonic() > self.deadline:
            return self._record(Answer(category, label, None, "", b"", ["not sent: the battery's time budget ran out"]))
        chunks = []
        try:
            with socket.create_connection(("127.0.0.1", self.server.port), timeout=self.timeout) as s:
                s.sendall(data)
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except OSError as exc:
            if not chunks:
                return self._record(Answer(category, label, None, "", b"", [f"no answer: {exc}"]), expect)
        raw = b"".join(chunks)
        match = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
        head, _, body = raw.partition(b"\r\n\r\n")
        ctype = re.search(rb"(?im)^content-type:\s*([^\r\n]*)", head)
        answer = Answer(category, label, int(match.group(1)) if match else None,
                        ctype.group(1).decode("latin-1") if ctype else "", body)
        if match is None:
            answer.problems.append(f"no HTTP answer: {raw[:120]!r}")
        return self._record(answer, expect, json_error=False)

    def _record(self, a: Answer, expect: Iterable[int] | None = None, json_error: bool = True) -> Answer:
        if a.status is not None:
            body = f"<{len(a.body)} bytes of {a.content_type}>" if a.content_type.startswith("image/") else \
                repr(a.body[:200])
            if a.status >= 500:
                a.problems.append(f"server error {a.status}: {body}")
            elif expect is not None and a.status not in set(expect):
                allowed = set(expect)
                said = "a 4xx" if allowed == set(range(400, 500)) else sorted(allowed)
                a.problems.append(f"status {a.status}, expected {said}: {body}")
            if 400 <= a.status and json_error and not a.content_type.startswith("application/json"):
                a.problems.append(f"error {a.status} without a JSON body ({a.content_type!r}): {a.body[:120]!r}")
            if any(secret and secret in a.body for secret in self.secret_bytes):
                a.problems.append("LEAK: a secret file's bytes are in the body")
            elif SECRET_MARK in a.body:
                a.problems.append("LEAK: the secret marker is in the body")
            if a.content_type.startswith("image/") and _image_is_secret(a.body):
                a.problems.append("LEAK: the answer shows the secret picture")
            if b"Traceback (most recent call last)" in a.body:
                a.problems.append("a traceback in the body")
        self.answers.append(a)
        return a

    # reading the record
    def failures(self, category: str | None = None) -> list[str]:
        return [f"[{a.category}] {a.label!r} -> {a.status}: {p}" for a in self.answers
                if category in (None, a.category) for p in a.problems]

    def count(self, category: str | None = None) -> int:
        return sum(1 for a in self.answers if category in (None, a.category))

    def summary(self) -> dict[str, int]:
        return {"requests": len(self.answers),
                "5xx": sum(1 for a in self.answers if a.status is not None and a.status >= 500),
                "no answer": sum(1 for a in self.answers if any(p.startswith("no answer") for p in a.problems)),
                "leaks": sum(1 for a in self.answers if any(p.startswith("LEAK") for p in a.problems)),
                "unexpected": sum(1 for a in self.answers if any(p.startswith("status ") for p in a.problems))}


def enc(text: str | bytes) -> str:
    """Percent-encode every byte that is not unreserved (slashes too)."""
    return quote(text, safe="")


def form(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]], boundary: str = "stressboundary7") -> tuple[
        bytes, dict]:
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, ctype) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@dataclass
class Target:
    """What the battery knows of the served library."""
    manifest: Manifest
    ids: dict[bytes, int]  # indexed OS path -> id
    swapped: dict[str, int] = field(default_factory=dict)  # what was swapped -> id
    name_limit: int | None = None  # serve at most this many of the files with hostile names (spread evenly)

    def some_id(self) -> int:
        return min(self.ids.values())

    def named(self) -> list[tuple[bytes, int]]:
        """Indexed files with hostile names (the names/ folders)."""
        named = sorted((p, i) for p, i in self.ids.items() if b"/names/" in p)
        if self.name_limit and len(named) > self.name_limit:
            named = named[::-(-len(named) // self.name_limit)]
        return named


TRAVERSALS = ["..%2f..%2f..%2f..%2fetc%2fpasswd", "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
              "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%252e%252e%252fetc%252fpasswd", "..%5c..%5c..%5cetc%5cpasswd",
              "%2fetc%2fpasswd", "....%2f%2f....%2f%2fetc%2fpasswd", "%c0%ae%c0%ae%2f%c0%ae%c0%ae%2fetc%2fpasswd",
              "..%00", "1%2f..%2f..%2f..%2fetc%2fpasswd", "1%00.jpg", "..;%2f..;%2fetc%2fpasswd", "%e2%80%a5%2fetc"]


def traversal(b: Battery, t: Target, lean: bool) -> None:
    outside = t.manifest.secrets[0]
    rel = os.path.relpath(outside, t.manifest.root)
    variants = TRAVERSALS + [enc(outside), enc(rel), enc(b"../" * 12 + outside.lstrip(b"/"))]
    routes = ["/api/images/{}", "/api/images/{}/metadata", "/api/images/{}/thumbnail", "/api/images/{}/similar"]
    if lean:
        routes = routes[:2]
    for route in routes:
        for v in (variants if route == routes[0] else variants[::3]):
            b.request("traversal", "GET", route.format(v), expect=range(400, 500))
    some = t.some_id()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for v in variants[::2]:
        b.request("traversal", "DELETE", f"/api/images/{some}/tags/{v}", headers=auth, expect=(200, 404, 422))
    for v in [*variants[::2], "..%2f" * 20 + enc(outside.lstrip(b"/"))]:
        b.request("traversal", "GET", f"/static/{v}", expect=range(400, 500))
    for raw in (f"/api/images/{some}/../../../../etc/passwd", "/static/../../../../../etc/passwd",
                "//etc/passwd", "/api/images/" + "..%2f" * 30 + enc(outside.lstrip(b"/"))):
        b.request("traversal", "GET", raw, expect=range(400, 500))


def huge_ids(b: Battery, t: Target, lean: bool) -> None:
    some = t.some_id()
    for q in ("id:99999999999999999999", "id:9223372036854775807", "id:9223372036854775808", "id:-1", "id:0",
              "id:1e400", "id:0x10", "id:\u0663", f"id:{some} + id:99999999999999999999", "id:" + "9" * 4000,
              f"2:id:{some} + -1e308:id:{some}"):
        b.request("huge ids", "GET", "/api/search?q=" + enc(q), expect=(200, 400, 422))
    for x in ("99999999999999999999", str(2**62), str(2**62 + 1), str(2**63), "-1", "0", "1e3", "0x10", "%d9%a3",
              "1.5", "9" * 5000, "1_000"):
        b.request("huge ids", "GET", f"/api/images/{x}", expect=range(400, 500))
        if not lean:
            b.request("huge ids", "GET", f"/api/images/{x}/thumbnail", expect=range(400, 500))
    for path in (f"/api/search?q=red&limit={10**30}", "/api/search?q=red&limit=-1", "/api/search?q=red&limit=1e2",
                 f"/api/search?q=red&threshold={'1' + '0' * 400}", "/api/search?q=red&threshold=-1e309",
                 f"/api/images/{some}/similar?limit={10**30}", f"/api/images/{some}/thumbnail?size={10**30}",
                 "/api/search?q=red&where=" + enc("width>=99999999999999999999999"),
                 "/api/search?q=red&where=" + enc("taken>=99999-01-01"),
                 "/api/search?q=red&where=" + enc("id=99999999999999999999"),
                 "/api/search?q=red&where=" + enc("height<-99999999999999999999999")):
        b.request("huge ids", "GET", path, expect=(200, 400, 404, 422))


def swap_in_secrets(t: Target) -> list[str]:
    """Replace indexed files by symlinks to the secrets outside the folder (a file, and a folder on the path); returns
    the swaps that could not be made because their file is not in the library."""
    m = t.manifest
    secret_jpg = next(s for s in m.secrets if s.endswith(b"secret.jpg"))
    secret_txt = next(s for s in m.secrets if s.endswith(b"secret.txt"))
    plain = sorted(p for p in t.ids if b"/a_good/" in p)[:2]
    missing = []
    for what, path, target in zip(("file -> secret.jpg", "file -> secret.txt"), plain, (secret_jpg, secret_txt)):
        os.replace(path, path + b".orig")
        os.symlink(target, path)
        t.swapped[what] = t.ids[path]
    missing += ["file -> secret.jpg", "file -> secret.txt"][len(plain):]
    swap = next((p for p in t.ids if p.endswith(b"/z_swap/photo.jpg")), None)
    if swap is None:
        missing.append("folder -> outside")
    else:
        folder = os.path.dirname(swap)
        os.replace(folder, folder + b".orig")
        os.symlink(os.path.join(m.outside, b"swap_target"), folder)
        t.swapped["folder -> outside"] = t.ids[swap]
    return missing


def symlink_swap(b: Battery, t: Target, lean: bool) -> None:
    for what in swap_in_secrets(t):
        b._record(Answer("symlink swap", what, None, "", b"", ["cannot swap: its file is not in the library"]))
    for what, image_id in t.swapped.items():
        for path, headers in ((f"/api/images/{image_id}", {}), (f"/api/images/{image_id}", {"Accept": "image/*"}),
                              (f"/api/images/{image_id}", {"Range": "bytes=0-"}),
                              (f"/api/images/{image_id}/thumbnail?size=160", {}),
                              (f"/api/images/{image_id}/thumbnail?size=640", {})):
            b.request("symlink swap", "GET", path, headers=headers, expect=range(400, 500),
                      label=f"{what}: GET {path} {headers or ''}")
        b.request("symlink swap", "GET", f"/api/images/{image_id}/metadata", expect=(200, 404),
                  label=f"{what}: metadata")


def plain_roots(m: Manifest) -> list[bytes]:
    """The folders of plain photos (and the one the swap check replaces): indexed first where something must be
    served even if a whole run over the hostile corpus fails."""
    return [os.path.join(m.root, b"a_good"), os.path.join(m.root, b"z_swap")]


def hostile_names(b: Battery, t: Target, lean: bool) -> None:
    named = t.named()
    if not named:
        b._record(Answer("names", "files with hostile names", None, "", b"",
                         ["no file with a hostile name is in the library: nothing of theirs to serve"]))
    for k, (_path, image_id) in enumerate(named):
        a = b.request("names", "GET", f"/api/images/{image_id}", expect=(200,))
        for key, value in a.headers:
            if re.search(r"[\x00-\x1f\x7f-\x9f]", value):
                a.problems.append(f"raw control characters in the {key} header: {value!r}")
        b.request("names", "GET", f"/api/images/{image_id}/metadata", expect=(200,))
        if not lean or k % 4 == 0:
            b.request("names", "GET", f"/api/images/{image_id}/thumbnail?size=160", expect=(200,))
    for q in ("pwned", "bad utf8", "caf", "emoji", "red&limit=500", "L" * 200, "name"):
        b.request("names", "GET", "/api/search?q=" + enc(q).replace("%26", "&").replace("%3D", "="),
                  expect=(200,))
    b.request("names", "GET", "/api/search?q=photo&limit=500&keywords=false", expect=(200,))
    if named:
        b.request("names", "GET", f"/api/images/{named[0][1]}/similar?limit=500", expect=(200,))


def uploads(b: Battery, t: Target, lean: bool) -> None:
    bombs = {"bomb_header.png": hc.bomb_png(), "bomb_valid.png": hc.bomb_png_valid(), "bomb.gif": hc.bomb_gif(),
             "bomb.jpg": hc.bomb_jpeg(), "bomb.bmp": hc.bomb_bmp(), "bomb.tif": hc.bomb_tiff(),
             "bomb.webp": hc.bomb_webp(), "6mp.png": hc.encode(hc.photo(1, (3000, 2000)).convert("L"), "PNG"),
             "truncated.jpg": hc.truncated("JPEG", 3),
             "empty.jpg": b"", "text.jpg": b"not an image\n" * 50}
    for name, data in bombs.items():
        body, headers = form({"text": "red"}, {"image": (name, data, "image/png")})
        b.request("uploads", "POST", "/api/search", headers=headers, body=body, expect=(413, 422),
                  label=f"upload {name} ({len(data)} bytes)")
    big = os.urandom(2_000_000)
    body, headers = form({}, {"image": ("big.jpg", big, "image/jpeg")})
    b.request("uploads", "POST", "/api/search", headers=headers, body=body, expect=(413,), label="2 MB upload")
    b.request("uploads", "POST", "/api/search", headers={"Content-Length": "50000000", **headers}, body=b"x" * 1000,
              expect=(413,), label="Content-Length 50 MB, 1 kB sent")
    for value in ("-1", "1e9", "9" * 30, "0x10"):  # (the HTTP layer may refuse these first: plain-text 400)
        b.request("uploads", "POST", "/api/search", headers={"Content-Length": value, **headers}, body=b"",
                  expect=(400, 413, 422), label=f"Content-Length {value!r}", json_error=False)
    start = body[:body.index(b"\r\n\r\n") + 4]  # a well-formed upload that never ends within the limit
    chunks = [start] + [b"x" * 65536] * 32
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    b.request("uploads", "POST", "/api/search", headers={"Transfer-Encoding": "chunked", **headers}, body=chunked,
              expect=(413,), label="2 MB chunked, no length")
    b.raw("uploads", "Content-Length twice", (
        f"POST /api/search HTTP/1.1\r\nHost: {b.server.host}\r\nContent-Type: multipart/form-data; boundary=z\r\n"
        f"Content-Length: 5\r\nContent-Length: 500\r\nConnection: close\r\n\r\nhello").encode(), expect=(400,))
    b.raw("uploads", "Content-Length and chunked", (
        f"POST /api/search HTTP/1.1\r\nHost: {b.server.host}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
        f"Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n").encode(), expect=(400, 422))


def content_types(b: Battery, t: Target, lean: bool) -> None:
    some = t.some_id()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    cases = [("POST", "/api/search", {"Content-Type": "application/json"}, b'{"text": "red"}', range(400, 500)),
             ("POST", "/api/search", {"Content-Type": "text/plain"}, b"red", range(400, 500)),
             ("POST", "/api/search", {"Content-Type": "multipart/form-data"}, b"--x\r\n", range(400, 500)),
             ("POST", "/api/search", {"Content-Type": "multipart/form-data; boundary="}, b"--\r\n", range(400, 500)),
             ("POST", "/api/search", {"Content-Type": "multipart/form-data; boundary=zz"}, b"\xff\x00garbage",
              range(400, 500)),
             ("POST", "/api/search", {"Content-Type": "application/x-www-form-urlencoded"}, b"text=red", (200,)),
             ("POST", "/api/search", {"Content-Type": "image/png"}, hc.encode(hc.photo(2), "PNG"), range(400, 500)),
             ("POST", f"/api/images/{some}/tags", {**auth, "Content-Type": "text/plain"}, b'{"tags": ["x"]}',
              range(400, 500)),
             ("POST", f"/api/images/{some}/tags", {**auth, "Content-Type": "application/x-www-form-urlencoded"},
              b"tags=x", range(400, 500)),
             ("POST", f"/api/images/{some}/tags", {**auth, "Content-Type": "multipart/form-data; boundary=q"},
              b"--q--\r\n", range(400, 500)),
             ("PUT", "/api/search", {}, None, (405,)), ("PROPFIND", "/api/status", {}, None, (405,)),
             ("TRACE", "/api/status", {}, None, (405,)), ("DELETE", "/api/search", {}, None, (405,)),
             ("GET", "/api/search?q=red", {"Content-Type": "application/json"}, b"{" * 1000, (200,))]
    for method, path, headers, body, expect in cases:
        b.request("content types", method, path, headers=headers, body=body, expect=expect,
                  label=f"{method} {path} as {headers.get('Content-Type')}")
    for path, headers in ((f"/api/images/{some}", {"Range": "bytes=99999999999999999999-"}),
                          (f"/api/images/{some}", {"Range": "bytes=" + ",".join(f"{k}-{k}" for k in range(500))}),
                          (f"/api/images/{some}", {"Range": "bytes=-0"}), (f"/api/images/{some}", {"Range": "pages=1"}),
                          (f"/api/images/{some}", {"Accept": "application/json;q=0.1, image/*;q=0.9"}),
                          (f"/api/images/{some}", {"If-None-Match": "*" * 5000}),
                          (f"/api/images/{some}", {"If-Modified-Since": "Mon, 99 Foo 99999 99:99:99 GMT"})):
        b.request("content types", "GET", path, headers=headers, expect=(200, 206, 304, 400, 416),
                  json_error=False, label=f"GET {path} {str(headers)[:80]}")


def malformed_json(b: Battery, t: Target, lean: bool) -> None:
    some = t.some_id()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    bodies = [b"{not json", b'{"tags": "x"}', b'{"tags": [1, 2]}', b"[]", b"null", b"", b'{"tags": []}',
              b"[" * 100_000 + b"]" * 100_000, b'{"tags": ' + b"[" * 5000 + b"]" * 5000 + b"}",
              b'{"tags": ["' + b"a" * 100_000 + b'"]}', b'{"tags": ["\\u0000"]}', b'{"tags": ["\xff\xfe"]}',
              b'{"tags": NaN}', b'{"tags": 1e999999}', b'{"tags": ["\\ud800"]}',
              b'{"tags": ["x"], "tags": 5}', b'{"tags": ["x"]} trailing', b'{"tags": ["' + b"\x1b]0;pwned\x07" + b'"]}']
    for body in bodies:
        b.request("malformed json", "POST", f"/api/images/{some}/tags", headers=headers, body=body,
                  expect=range(400, 500), label=f"tags body {body[:40]!r}... ({len(body)} bytes)")
    for body in (b'{"tags": ["x"], "tags": ["y"]}', b'\xef\xbb\xbf{"tags": ["bom"]}'):  # may be accepted (RFC 8259)
        b.request("malformed json", "POST", f"/api/images/{some}/tags", headers=headers, body=body,
                  expect=(200, 400, 422), label=f"tags body {body!r}")


def bad_hosts(b: Battery, t: Target, lean: bool) -> None:
    for host in ("evil.example", "evil.example:80", f"127.0.0.1.evil.example:{b.server.port}", "127.0.0.1@evil.example",
                 "evil.example#@127.0.0.1", "127.1", "0x7f.0.0.1", "2130706433", "localhost.evil.example", "",
                 "[::ffff:7f00:1]x", "*"):
        b.request("hosts", "GET", "/api/status", host=host, expect=(400,), label=f"Host {host!r}")
    for host in ("localhost", f"LOCALHOST:{b.server.port}", "[::1]", f"127.0.0.1:{b.server.port}"):
        b.request("hosts", "GET", "/api/status", host=host, expect=(200,), label=f"Host {host!r} (allowed)")
    port = b.server.port
    for label, head in (
            ("two Host headers, evil last", f"Host: 127.0.0.1:{port}\r\nHost: evil.example\r\n"),
            ("two Host headers, evil first", f"Host: evil.example\r\nHost: 127.0.0.1:{port}\r\n"),
            ("two identical Host headers", f"Host: 127.0.0.1:{port}\r\nHost: 127.0.0.1:{port}\r\n"),
            ("Host header folded", f"Host: evil.example\r\n 127.0.0.1:{port}\r\n")):
        b.raw("hosts", label, f"GET /api/status HTTP/1.1\r\n{head}Connection: close\r\n\r\n".encode(), expect=(400,))
    absolute = f"GET http://127.0.0.1:{port}/api/status HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    b.raw("hosts", "absolute-form target, evil Host", absolute.encode(), expect=(400,))
    b.raw("hosts", "HTTP/1.0 without Host", b"GET /api/status HTTP/1.0\r\n\r\n", expect=(400,))


def write_rules(b: Battery, t: Target, lean: bool) -> None:
    some = t.some_id()
    origin = f"http://127.0.0.1:{b.server.port}"
    good = {"Authorization": f"Bearer {TOKEN}"}
    refused = [({}, 401), ({"Authorization": "Bearer wrong-token-0000000000"}, 401),
               ({"Authorization": "Bearer "}, 401), ({"Authorization": f"Basic {TOKEN}"}, 401),
               ({"Authorization": f"Bearer {TOKEN}x"}, 401),
               ({"Authorization": f"Bearer {TOKEN[:-1]}"}, 401), ({"X-Forwarded-For": "203.0.113.9"}, 401),
               ({**good, "Origin": "http://evil.example"}, 403), ({**good, "Origin": "null"}, 403),
               ({**good, "Origin": f"{origin}.evil.example"}, 403), ({**good, "Origin": "http://localhost.evil"}, 403),
               ({**good, "Origin": f"https://127.0.0.1:{b.server.port}@evil.example"}, 403)]
    for k, (headers, status) in enumerate(refused):
        body = json.dumps({"tags": [f"refused-{k}"]}).encode()
        b.request("writes", "POST", f"/api/images/{some}/tags", body=body, expect=(status,),
                  headers={**headers, "Content-Type": "application/json"}, label=f"tag write with {headers}")
        b.request("writes", "DELETE", f"/api/images/{some}/tags/keep-me", headers=headers, expect=(status,),
                  label=f"tag delete with {headers}")
        b.request("writes", "POST", "/api/index", headers=headers, expect=(status,), label=f"index with {headers}")
    b.request("writes", "POST", f"/api/images/{some}/tags?token={TOKEN}", body=b'{"tags": ["refused-query"]}',
              headers={"Content-Type": "application/json"}, expect=(401,), label="token in the query string")
    for headers in (good, {**good, "Origin": origin}):
        b.request("writes", "POST", f"/api/images/{some}/tags", body=b'{"tags": ["keep-me"]}',
                  headers={**headers, "Content-Type": "application/json"}, expect=(200,), label=f"allowed {headers}")
    b.request("writes", "POST", "/api/index", headers=good, expect=(202, 400, 409), label="index with the token")
    meta = b.request("writes", "GET", f"/api/images/{some}/metadata", expect=(200,))
    try:
        tags = {x["tag"] for x in json.loads(meta.body)["tags"]}
    except (ValueError, KeyError, TypeError):
        tags = set()
        meta.problems.append("metadata is not JSON with tags")
    if "keep-me" not in tags:
        meta.problems.append(f"a refused delete removed a tag (or the allowed write did not land): {sorted(tags)}")
    leaked = sorted(x for x in tags if x.startswith("refused"))
    if leaked:
        meta.problems.append(f"refused writes changed the library: tags {leaked}")


_FUZZ_PARTS = ["..", "%2e", "%2f", "%00", "%ff", "%c0%af", "~", "id:", "9" * 25, "-1", "\u202e", "%1b]0;x%07", "tag:",
               "*", "%", "%%", "?", "#", ";", "&", "=", "\\", "%5c", "file:", "http:", "//", "\u00e9", "%d8%00"]


def fuzz(b: Battery, t: Target, n: int, seed: int) -> None:
    """`n` random requests built from nasty pieces: every answer must still be a non-5xx, leak-free one."""
    rng = random.Random(seed)
    ids = sorted(t.ids.values())
    routes = ["/api/images/{}", "/api/images/{}/metadata", "/api/images/{}/thumbnail?size={}",
              "/api/images/{}/similar?limit={}", "/api/search?q={}", "/api/search?q=red&where={}",
              "/api/search?q=red&tags={}", "/api/search?q=red&sort={}", "/static/{}", "/{}"]
    headers_pool = [{}, {"Accept": "application/json"}, {"Range": "bytes=0-10"}, {"Origin": "http://evil.example"},
                    {"Accept-Encoding": "gzip, br"}, {"X-Forwarded-For": "1.2.3.4"}, {"Cookie": "a=" + "b" * 4000}]
    for _ in range(n):
        pieces = [rng.choice(_FUZZ_PARTS + [str(rng.choice(ids))]) for _ in range(rng.randint(1, 6))]
        value = "".join(p if p.startswith("%") else enc(p) for p in pieces)
        route = rng.choice(routes)
        path = route.format(*([value] + [str(rng.choice(ids))] * 2)[:route.count("{}")])
        b.request("fuzz", rng.choice(["GET", "GET", "GET", "HEAD", "POST", "OPTIONS"]), path,
                  headers=rng.choice(headers_pool), json_error=False)


CATEGORIES: dict[str, Callable[[Battery, Target, bool], None]] = {
    "traversal": traversal, "huge ids": huge_ids, "names": hostile_names, "uploads": uploads,
    "content types": content_types, "malformed json": malformed_json, "hosts": bad_hosts, "writes": write_rules,
    "symlink swap": symlink_swap}

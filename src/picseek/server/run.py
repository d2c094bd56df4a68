"""Running the app with uvicorn: on a socket bound up front (clear errors, port 0 = any free port), in the
foreground for `picseek serve`, or in a thread for tests and benchmarks."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import UsageError


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket; a port in use or a bad address is a UsageError that says what to do."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"cannot listen on {host}:{port}: {reason} (pick another --port or --host)") from None
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server(app, log_level: str = "warning", access_log: bool = False):
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=access_log, server_header=False))


def serve_forever(app, sock: socket.socket, log_level: str = "warning", access_log: bool = False) -> None:
    """Serve until Ctrl+C / SIGTERM (uvicorn handles the signals and shuts down cleanly)."""
    _server(app, log_level, access_log).run(sockets=[sock])


@contextmanager
def running(app, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` in a background thread while the block runs; yields the base URL."""
    sock = listen(host, port)
    server = _server(app)
    server.install_signal_handlers = lambda: None  # uvicorn < 0.29 (signals belong to the main thread)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="picseek-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()

"""Running the app with uvicorn: on a socket bound up front (clear errors, port 0 = any free port), in the
foreground for `picseek serve`, or in a thread for tests and benchmarks."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import PicseekError, UsageError

PROXIES = "127.0.0.1"  # whose X-Forwarded-* headers uvicorn believes by default: a proxy on this machine


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


def _config(app, log_level: str = "warning", access_log: bool = False, forwarded_allow_ips: str = PROXIES, **kw):
    """uvicorn's settings. X-Forwarded-For/-Proto give the client address and scheme only when they come from one of
    `forwarded_allow_ips` (comma-separated addresses or networks, "*" for any): a reverse proxy on this machine by
    default, never a client that writes the headers itself."""
    import uvicorn

    return uvicorn.Config(app, log_level=log_level, access_log=access_log, server_header=False, proxy_headers=True,
                          forwarded_allow_ips=forwarded_allow_ips, **kw)


def _server(app, log_level: str = "warning", access_log: bool = False, forwarded_allow_ips: str = PROXIES):
    import uvicorn

    return uvicorn.Server(_config(app, log_level, access_log, forwarded_allow_ips))


def serve_forever(app, sock: socket.socket, log_level: str = "warning", access_log: bool = False,
                  forwarded_allow_ips: str = PROXIES) -> None:
    """Serve until Ctrl+C / SIGTERM (uvicorn handles the signals and shuts down cleanly)."""
    _server(app, log_level, access_log, forwarded_allow_ips).run(sockets=[sock])


def serve_workers(factory: str, workers: int, sock: socket.socket, log_level: str = "warning",
                  access_log: bool = False, forwarded_allow_ips: str = PROXIES) -> None:
    """Serve with `workers` processes that share `sock`, each building its app with `factory` ("module:function").
    uvicorn replaces a worker that dies, replaces them all one by one on SIGHUP, and stops them on Ctrl+C / SIGTERM.
    Raises PicseekError when the workers cannot start (their log says why)."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    config = _config(factory, log_level, access_log, forwarded_allow_ips, factory=True, workers=workers)
    supervisor = Multiprocess(config, sockets=[sock])
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise PicseekError("a web worker could not start (its error is above); nothing is serving")


@contextmanager
def running(app, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0,
            forwarded_allow_ips: str = PROXIES) -> Iterator[str]:
    """Serve `app` in a background thread while the block runs; yields the base URL."""
    sock = listen(host, port)
    server = _server(app, forwarded_allow_ips=forwarded_allow_ips)
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

"""What the browser tests share (a module, not a conftest: tests/conftest.py is imported as `conftest`): Debian's
chromium through Playwright, a page that fails its test on a JavaScript error, and a server on a library."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test,server]'")
pytest.importorskip("fastapi", reason="pip install -e '.[test,server]'")

from picseek.server import ServerSettings, create_app  # noqa: E402
from picseek.server.run import running  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
TIMEOUT_MS = 60_000
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    with playwright.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=FLAGS, viewport=DESKTOP)
        context.set_default_timeout(TIMEOUT_MS)
        yield context
        context.close()


@pytest.fixture
def page(browser_context):
    pg = browser_context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    pg.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@contextmanager
def serving(library, folders=(), index: bool = True, timeout: float = 600) -> Iterator[tuple[str, object]]:
    """A server on a free loopback port over `library`; with `index`, its start-up index run of `folders` done."""
    app = create_app(library, ServerSettings(folders=tuple(str(f) for f in folders), index_workers=0,
                                             index_on_start=index))
    with running(app) as url:
        if index and folders:
            app.state.indexer.join(timeout)
            assert app.state.indexer.state()["phase"] == "done", app.state.indexer.state()
        yield url, app


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

"""/docs (Swagger UI) and /redoc with no internet: every request to another host is aborted, and both pages still
list the API's operations, with nothing blocked by their Content-Security-Policy and nothing fetched elsewhere."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from picseek.library import Library

import browsers
from browsers import serving, shot
from conftest import ColourEmbedder

browser_context, page = browsers.browser_context, browsers.page  # the fixtures
LOCAL = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serving(Library(tmp_path_factory.mktemp("docs-lib") / "lib", model=ColourEmbedder()), index=False) as (url, _):
        yield url


@pytest.fixture
def offline(page):
    """The page with every request off this machine aborted (as with no network); yields what was aborted and
    what the Content-Security-Policy refused."""
    aborted, refused = [], []

    def only_local(route):
        if urlsplit(route.request.url).hostname in LOCAL:
            route.continue_()
        else:
            aborted.append(route.request.url)
            route.abort("internetdisconnected")

    page.route("**/*", only_local)
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    yield aborted, refused


def test_swagger_ui_lists_the_operations_offline(page, server, offline):
    aborted, refused = offline
    answer = page.goto(server + "/docs")
    assert "script-src 'self' 'sha256-" in answer.headers["content-security-policy"]
    page.wait_for_selector(".opblock-summary-path")
    page.wait_for_function("() => document.querySelectorAll('.opblock').length >= 10")
    paths = page.eval_on_selector_all(".opblock-summary-path", "ps => ps.map(p => p.textContent.trim())")
    assert {"/api/search", "/api/browse", "/api/status", "/api/images/{image_id}/thumbnail"} <= set(paths), paths
    page.click(".opblock-summary-path[data-path='/api/status']")  # an operation opens (the UI runs, not only draws)
    page.wait_for_selector(".opblock.is-open .try-out__btn")
    shot(page, "docs-swagger-offline")
    assert not aborted, f"/docs asked other hosts for {aborted}"
    assert not refused, refused


def test_redoc_lists_the_operations_offline(page, server, offline):
    aborted, refused = offline
    answer = page.goto(server + "/redoc")
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    page.wait_for_selector("[data-section-id^='operation/']")
    page.wait_for_function("() => document.querySelectorAll(\"[data-section-id^='operation/']\").length >= 10")
    text = page.inner_text("body")
    assert "/api/search" in text and "/api/browse" in text
    shot(page, "docs-redoc-offline")
    assert not aborted, f"/redoc asked other hosts for {aborted}"
    # ReDoc's menu ends with the Redocly logo from cdn.redoc.ly: the policy keeps even that on the machine.
    assert all("https://cdn.redoc.ly/" in r and "img-src" in r for r in refused), refused

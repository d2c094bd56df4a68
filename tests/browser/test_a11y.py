"""Accessibility: axe-core (the npm package, tests/browser/package.json) run in the web page at a desktop and a phone
size in each state a person meets: the empty library, browsing, search results, the detail view, an example image,
the filters open, an error, a selection, the classify panel. No serious or critical violation is allowed.
Screenshots of each state go to test-artifacts/."""
from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import pytest

from picseek.library import Library

import browsers
from browsers import DESKTOP, PHONE, serving, shot
from conftest import ColourEmbedder, draw_photo
from needs import need_file

browser_context = browsers.browser_context  # the fixture
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
SIZES = {"desktop": DESKTOP, "phone": PHONE}
APP_JS = Path(__file__).resolve().parents[2] / "src" / "picseek" / "server" / "static" / "app.js"


@pytest.fixture(scope="module")
def axe_source() -> str:
    return need_file(AXE, "npm ci --prefix tests/browser, as .ci/run does").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def colour_url(tmp_path_factory):
    """A small library of coloured shapes, one a described one, spread over months."""
    root = tmp_path_factory.mktemp("a11y-photos")
    for i, colour in enumerate(["red", "green", "blue", "yellow", "purple", "orange"] * 2):
        path = root / f"{colour}_{i:02d}.jpg"
        draw_photo(colour, "circle" if i % 2 else "square", seed=i).save(path, quality=90)
        when = 1_672_531_200 + i * 86_400 * 15
        os.utime(path, (when, when))
    library = Library(tmp_path_factory.mktemp("a11y-lib") / "lib", model=ColourEmbedder())
    with serving(library, [root], timeout=120) as (url, _):
        image_id = library.store.find_path(str(root / "blue_02.jpg"))
        library.store.set_fields([(image_id, {"description": "a blue shape on grey", "photographer": "Alec Weir"})])
        yield url


@pytest.fixture(scope="module")
def empty_url(tmp_path_factory):
    with serving(Library(tmp_path_factory.mktemp("a11y-empty") / "lib", model=ColourEmbedder()), index=False) \
            as (url, _):
        yield url


def violations(page, axe_source: str) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now (injected through the DevTools protocol,
    which the page's Content-Security-Policy does not restrict)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source + "\n;0")
    found = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical').map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ': ' + n.failureSummary.replace(/\\s+/g, ' '))}));
    }""")
    return found


def drop_image(page, image) -> None:
    """Drop an image on the drop zone as a user's drag and drop does (a DataTransfer with a File)."""
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    page.evaluate("""data => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'example.jpg', {type: 'image/jpeg'}));
        for (const type of ['dragenter', 'dragover', 'drop'])
            document.querySelector('#dropzone').dispatchEvent(
                new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", base64.b64encode(buf.getvalue()).decode())


def settle(page) -> None:
    """Wait for the page's transitions (the states fade in) before judging colours."""
    page.wait_for_timeout(350)


@pytest.mark.parametrize("size", SIZES)
def test_no_serious_accessibility_violations_in_any_state(browser_context, colour_url, empty_url, axe_source, size):
    page = browser_context.new_page()
    page.set_viewport_size(SIZES[size])
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    found: dict[str, list[dict]] = {}

    def check(state: str) -> None:
        settle(page)
        shot(page, f"a11y-{state}-{size}")
        found[state] = violations(page, axe_source)

    try:
        page.goto(empty_url + "/")
        page.wait_for_selector("#message[data-kind='empty']")
        check("empty-library")

        page.goto(colour_url + "/")
        page.wait_for_selector("#results .tile")
        check("browse")

        page.fill("#q", "blue")
        with page.expect_response(lambda r: "/api/search" in r.url):
            page.press("#q", "Enter")
        page.wait_for_function("() => document.querySelector('#summary').textContent.includes('blue')")
        check("search")

        page.click("#results > li:nth-child(1) .pick")
        page.click("#results > li:nth-child(2) .pick", modifiers=["Shift"])
        page.wait_for_selector("#sel-add", state="visible")
        check("selection")
        page.click("#sel-clear")
        page.click("#classify-open")
        page.wait_for_selector("#classify", state="visible")
        check("classify-panel")
        page.click("#classify-close")

        page.click("#results .tile >> nth=0")
        page.wait_for_selector("#detail[open]")
        page.wait_for_function("() => document.querySelector('#detail-fields').textContent.includes('path')")
        check("detail")
        page.keyboard.press("Escape")
        page.wait_for_function("() => !document.querySelector('#detail').open")

        if size == "phone":
            page.click("#fold-toggle")
        drop_image(page, draw_photo("green", seed=99))
        page.wait_for_selector("#query-image img")
        page.wait_for_function("() => document.querySelector('#summary').textContent.includes('example image')")
        check("example-image")
        page.click("#clear-image")

        page.click("#filters summary")
        page.click("#add-field")
        check("filters-open")

        page.route("**/api/search?*", lambda route: route.abort("connectionrefused"))
        page.fill("#q", "orange")
        page.press("#q", "Enter")
        page.wait_for_selector("#message[data-kind='error']")
        check("error")
    finally:
        page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    bad = {state: list(vs)
           for state, vs in found.items()}
    bad = {state: vs for state, vs in bad.items() if vs}
    assert not bad, "axe-core found serious or critical violations:\n" + "\n".join(
        f"{state}: [{v['impact']}] {v['id']}: {v['help']}\n    " + "\n    ".join(v["nodes"])
        for state, vs in bad.items() for v in vs)

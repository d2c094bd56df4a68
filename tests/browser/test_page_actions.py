"""The web page acting on results (issue 16, second slice), in Debian's headless chromium: pick tiles (click,
shift-click, Space, Ctrl+A), tag them, download them as a zip, copy their paths; classify an upload or the
selection (bars; stored as tags); the index errors; "More results" for a search. Its own ColourEmbedder server
(the fixtures of test_page.py, one instance for this module), so the tags written here touch no other test.
Screenshots go to test-artifacts/."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from conftest import ColourEmbedder, draw_photo

pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test,server]'")
import test_page as base  # noqa: E402
from test_page import CHROMIUM, first_results, search_for, shot, tile_names, wait_summary  # noqa: E402

# The page fixtures of test_page.py (module-scoped ones made again for this module: its own server and library).
browser_context, page, colour_url = base.browser_context, base.page, base.colour_url

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

from picseek.library import Library  # noqa: E402
from picseek.server import ServerSettings, create_app  # noqa: E402
from picseek.server.run import running  # noqa: E402


def picked(page) -> int:
    return page.eval_on_selector_all("#results .pick", "ps => ps.filter(p => p.checked).length")


def tile_tags(page, i: int) -> list[str]:
    return page.eval_on_selector_all(f"#results > li:nth-child({i + 1}) .tile-tag", "ts => ts.map(t => t.textContent)")


@pytest.fixture
def phone(browser_context):
    pg = browser_context.new_page()
    pg.set_viewport_size({"width": 390, "height": 844})
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    pg.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_pick_three_tiles_with_click_and_shift_click_then_tag_zip_and_copy(page, colour_url, browser_context):
    browser_context.grant_permissions(["clipboard-read", "clipboard-write"], origin=colour_url)
    page.goto(colour_url + "/")
    search_for(page, "red")
    wait_summary(page, "“red”")
    names = tile_names(page)
    assert page.is_hidden("#selection")
    page.click("#results > li:nth-child(1) .pick")
    page.click("#results > li:nth-child(3) .pick", modifiers=["Shift"])
    assert picked(page) == 3 and page.inner_text("#sel-count") == "3 selected" and page.is_visible("#selection")
    page.fill("#sel-tag", "Keepers")
    with page.expect_response(lambda r: r.url.endswith("/api/tags") and r.request.method == "POST") as res:
        page.click("#sel-add")
    assert res.value.status == 200 and res.value.json()["images"] == 3
    page.wait_for_function("() => document.querySelectorAll('#results .tile-tag[data-tag=\"keepers\"]').length === 3")
    assert [tile_tags(page, i) for i in range(4)] == [["keepers"]] * 3 + [[]]
    assert "Tagged 3 images" in page.inner_text("#toast")
    shot(page, "selection-desktop")
    # The zip: the three originals, by name.
    with page.expect_download() as dl:
        page.click("#sel-zip")
    data = Path(dl.value.path()).read_bytes()
    assert sorted(zipfile.ZipFile(io.BytesIO(data)).namelist()) == sorted(names[:3])
    page.click("#sel-copy")
    page.wait_for_function("() => document.querySelector('#toast').textContent.includes('Copied 3 paths')")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert [Path(p).name for p in copied.splitlines()] == names[:3]
    # The keyboard: Space picks the focused tile, Ctrl+A all, Escape none.
    page.focus("#results > li:nth-child(4) .tile")
    page.keyboard.press("Space")
    assert picked(page) == 4 and not page.evaluate("document.querySelector('#detail').open")
    page.keyboard.press("Control+a")
    assert picked(page) == len(names) and page.inner_text("#select-all") == "Clear the selection"
    page.keyboard.press("Escape")
    assert picked(page) == 0 and page.is_hidden("#selection")
    page.click("#select-all")
    assert picked(page) == len(names)
    page.fill("#sel-tag", "keepers")
    with page.expect_response(lambda r: r.url.endswith("/api/tags")):
        page.click("#sel-remove")
    page.wait_for_function("() => !document.querySelector('#results .tile-tag')")
    assert "Removed “keepers” from 3 images" in page.inner_text("#toast")
    # Tagged images are found by the tag chip, as any tag.
    page.click("#sel-clear")
    assert page.is_hidden("#selection")


def test_classify_an_upload_and_the_selection_into_tags(page, colour_url, tmp_path):
    green = tmp_path / "green.jpg"
    draw_photo("green", seed=5).save(green, quality=90)
    page.goto(colour_url + "/")
    search_for(page, "blue")
    wait_summary(page, "“blue”")
    page.click("#classify-open")
    assert page.is_visible("#classify") and page.get_attribute("#classify-open", "aria-expanded") == "true"
    page.fill("#labels", "red, green, blue, yellow")
    page.set_input_files("#classify-file", str(green))
    assert "green.jpg" in page.inner_text("#classify-target")
    with page.expect_response(lambda r: r.url.endswith("/api/classify")):
        page.click("#classify-go")
    page.wait_for_selector("#classify-result .bar-row")
    rows = page.eval_on_selector_all("#classify-result .bar-row", """rs => rs.map(r => [r.dataset.label,
        parseFloat(r.querySelector('.bar').getAttribute('aria-valuenow'))])""")
    assert [r[0] for r in rows][0] == "green" and len(rows) == 4 and abs(sum(r[1] for r in rows) - 100) < 1
    assert rows == sorted(rows, key=lambda r: -r[1])
    shot(page, "classify-desktop")
    # The selection, stored as tags.
    page.set_input_files("#classify-file", [])
    page.click("#results > li:nth-child(1) .pick")
    page.click("#results > li:nth-child(2) .pick", modifiers=["Shift"])
    assert "2 selected images" in page.inner_text("#classify-target")
    page.check("#classify-store")
    with page.expect_response(lambda r: r.url.endswith("/api/classify/tags")) as res:
        page.click("#classify-go")
    assert res.value.status == 200
    page.wait_for_function("() => document.querySelectorAll('#results .tile-tag[data-tag=\"blue\"]').length === 2")
    assert page.locator("#classify-result .prediction").count() == 2 and "Stored as tags" in page.inner_text(
        "#classify-result")
    # One image from its detail view, then the whole library.
    page.click("#sel-clear")
    page.click("#results .tile >> nth=0")
    page.wait_for_selector("#detail[open]")
    name = page.inner_text("#detail-title")
    page.click("#detail-classify")
    page.wait_for_function("() => !document.querySelector('#detail').open")
    assert page.inner_text("#classify-target") == f"Classifies {name}."
    page.uncheck("#classify-store")
    with page.expect_response(lambda r: r.url.endswith("/api/classify")):
        page.click("#classify-go")
    page.wait_for_function("() => document.querySelectorAll('#classify-result .prediction').length === 1")
    assert page.eval_on_selector("#classify-result .bar-row", "r => r.dataset.label") == "blue"
    page.check("#classify-all")
    assert page.is_checked("#classify-store") and "every image" in page.inner_text("#classify-target")
    with page.expect_response(lambda r: r.url.endswith("/api/classify/tags")) as res:
        page.click("#classify-go")
    assert res.value.json()["report"]["images"] == 12
    page.wait_for_function("() => document.querySelector('#classify-result h3').textContent.includes('12 images')")
    page.click("#classify-close")
    assert page.is_hidden("#classify")


def test_phone_selection_bar_and_classify_panel(phone, colour_url, tmp_path):
    red = tmp_path / "red.jpg"
    draw_photo("red", seed=2).save(red, quality=90)
    phone.goto(colour_url + "/")
    search_for(phone, "orange")
    wait_summary(phone, "“orange”")
    phone.click("#results > li:nth-child(1) .pick")
    phone.click("#results > li:nth-child(3) .pick", modifiers=["Shift"])
    assert picked(phone) == 3 and phone.is_visible("#selection")
    bar = phone.eval_on_selector("#selection", "e => e.getBoundingClientRect().toJSON()")
    assert bar["left"] >= 0 and bar["right"] <= 390 and bar["bottom"] <= 844
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    shot(phone, "selection-phone")
    phone.click("#sel-clear")
    phone.click("#classify-open")
    phone.fill("#labels", "red, green, blue")
    phone.set_input_files("#classify-file", str(red))
    with phone.expect_response(lambda r: r.url.endswith("/api/classify")):
        phone.click("#classify-go")
    phone.wait_for_selector("#classify-result .bar-row")
    assert phone.eval_on_selector("#classify-result .bar-row", "r => r.dataset.label") == "red"
    wide = phone.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > 390.5).map(e => e.id || e.className || e.tagName)""")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390, f"wider than a phone: {wide}"
    phone.evaluate("window.scrollTo(0, 0)")
    shot(phone, "classify-phone")


def test_more_results_pages_a_search(page, colour_url):
    page.goto(colour_url + "/?q=red&limit=5")
    wait_summary(page, "“red”")
    assert len(tile_names(page)) == 5 and page.inner_text("#more-button") == "More results"
    assert "5 results+" in page.inner_text("#summary")
    for n in (10, 12):
        with page.expect_response(lambda r: "after=" in r.url and "q=red" in r.url):
            page.click("#more-button")
        page.wait_for_function(f"() => document.querySelectorAll('#results .tile').length === {n}")
    names = tile_names(page)
    assert len(set(names)) == 12 and page.is_hidden("#more") and "12 results for" in page.inner_text("#summary")
    assert first_results(page, 1)[0].startswith("red")


def test_index_errors_are_shown_after_the_run(page, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        draw_photo("blue", seed=i).save(folder / f"p{i}.jpg")
    (folder / "broken.jpg").write_bytes(b"this is not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    app = create_app(Library(tmp_path / "lib", model=ColourEmbedder()),
                     ServerSettings(folders=(str(folder),), index_workers=0))
    with running(app) as url:
        app.state.indexer.join(60)
        page.goto(url + "/")
        page.wait_for_selector("#errors-open:not([hidden])")
        assert page.inner_text("#errors-open") == "2 unreadable (last run: 2)"
        page.click("#errors-open")
        page.wait_for_selector("#errors[open] #errors-list li")
        listed = page.eval_on_selector_all("#errors-list code", "cs => cs.map(c => c.textContent.split('/').pop())")
        assert listed == ["broken.jpg", "empty.png"] and "2 files could not be read" in page.inner_text("#errors")
        shot(page, "index-errors")
        page.click("#errors-close")


def test_a_label_set_is_saved_in_the_library_and_chosen_later(page, colour_url):
    page.goto(colour_url + "/")
    page.wait_for_selector("#results .tile")
    page.click("#classify-open")
    page.fill("#labels", "red, green, blue")
    page.once("dialog", lambda dialog: dialog.accept("primary colours"))
    with page.expect_response(lambda r: "/api/labelsets/" in r.url and r.request.method == "PUT") as res:
        page.click("#labelset-save")
    assert res.value.status == 200
    page.wait_for_function("() => document.querySelector('#labelset').value === 'primary colours'")
    page.reload()  # a new visit: the set comes from the library, not from the page's memory
    page.wait_for_selector("#results .tile")
    page.click("#classify-open")
    page.fill("#labels", "")
    page.wait_for_function("() => [...document.querySelectorAll('#labelset option')].some(o => o.value === "
                           "'primary colours')")
    page.select_option("#labelset", "primary colours")
    assert page.input_value("#labels") == "red, green, blue"
    page.click("#results .pick >> nth=0")  # (browsing: the list starts with a month header)
    with page.expect_response(lambda r: r.url.endswith("/api/classify")):
        page.click("#classify-go")
    page.wait_for_selector("#classify-result .bar-row")
    labels = page.eval_on_selector_all("#classify-result .bar-row", "rs => rs.map(r => r.dataset.label)")
    assert sorted(labels) == ["blue", "green", "red"]
    page.click("#sel-clear")

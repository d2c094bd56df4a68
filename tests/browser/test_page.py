"""The web page in a real browser (Playwright driving Debian's headless chromium) against a real server on a free
loopback port. Real semantics with the built-in model on scikit-image's sample photos (type "a cat", see the cat;
drop a recompressed crop, see its original first); page mechanics with the ColourEmbedder test double.
Screenshots go to test-artifacts/."""
from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from picseek.library import Library

# browsers skips this module where chromium, Playwright or the server extra is missing (test_page_actions imports
# ARTIFACTS and CHROMIUM from here)
import browsers
from browsers import ARTIFACTS, CHROMIUM, ServerSettings, create_app, running, shot  # noqa: F401
from conftest import ColourEmbedder, draw_photo

browser_context, page = browsers.browser_context, browsers.page  # the fixtures


@pytest.fixture(scope="module")
def sample_photos(tmp_path_factory):
    """Real photos that ship with scikit-image, and a recompressed crop of one of them."""
    import skimage.data

    folder = tmp_path_factory.mktemp("browser-photos")
    for name in ("chelsea", "coffee", "astronaut", "rocket", "camera"):
        arr = getattr(skimage.data, name)()
        Image.fromarray(arr[..., :3] if arr.ndim == 3 else arr).save(folder / f"{name}.jpg", quality=92)
    Image.fromarray(skimage.data.stereo_motorcycle()[0]).save(folder / "motorcycle.jpg", quality=92)
    im = Image.open(folder / "coffee.jpg")
    query = tmp_path_factory.mktemp("browser-query") / "coffee-crop.jpg"
    im.crop((20, 10, im.width - 30, im.height - 20)).resize((300, 190)).save(query, quality=60)
    return folder, query


@pytest.fixture(scope="module")
def builtin_url(tmp_path_factory, sample_photos):
    """A server on the built-in model's library of the sample photos (indexed by the server in the background)."""
    folder, _ = sample_photos
    with pytest.MonkeyPatch.context() as mp:  # the same shared cache of class embeddings as the other tests
        mp.setenv("PICSEEK_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "picseek-cache"))
        library = Library(tmp_path_factory.mktemp("browser-lib") / "lib", model="builtin")
        app = create_app(library, ServerSettings(folders=(str(folder),), index_workers=0))
        with running(app) as url:
            app.state.indexer.join(600)
            assert app.state.indexer.state()["phase"] == "done", app.state.indexer.state()
            yield url


@pytest.fixture(scope="module")
def colour_url(tmp_path_factory):
    """A server on a ColourEmbedder library: two folders of coloured shapes."""
    root = tmp_path_factory.mktemp("colour-photos")
    colours = ["red", "green", "blue", "yellow", "purple", "orange"]
    for i, colour in enumerate(colours * 2):
        sub = root / ("trips" if i < len(colours) else "home")
        sub.mkdir(exist_ok=True)
        path = sub / f"{colour}_{i:02d}.jpg"
        draw_photo(colour, "circle" if i % 2 else "square", seed=i).save(path, quality=90)
        when = 1_672_531_200 + i * 86_400 * 15  # from 2023-01-01, two a month: browsing groups them by month
        os.utime(path, (when, when))
    library = Library(tmp_path_factory.mktemp("colour-lib") / "lib", model=ColourEmbedder())
    app = create_app(library, ServerSettings(folders=(str(root),), index_workers=0))
    with running(app) as url:
        app.state.indexer.join(120)
        for name in ("blue_02.jpg", "blue_08.jpg"):  # imported metadata, as `picseek import-metadata` writes it
            image_id = library.store.find_path(str(next(root.rglob(name))))
            library.store.set_fields([(image_id, {"description": "a blue shape on grey",
                                                  "photographer": "Alec Weir" if name == "blue_02.jpg" else "Ann"})])
        yield url


def first_results(page, n: int = 1) -> list[str]:
    page.wait_for_selector("#results .tile")
    return [Path(p).name for p in page.eval_on_selector_all("#results .tile", "ts => ts.map(t => t.dataset.path)")][:n]


def wait_summary(page, text: str) -> None:
    """Wait until the line above the results names this search."""
    page.wait_for_function("t => document.querySelector('#summary').textContent.includes(t)", arg=text)


def search_for(page, text: str) -> None:
    page.fill("#q", text)
    with page.expect_response(lambda r: "/api/search" in r.url):
        page.press("#q", "Enter")


def drop_file(page, path: Path, mime: str = "image/jpeg") -> None:
    """Drop a file on the drop zone the way a user's drag and drop does (a DataTransfer with a File)."""
    data = base64.b64encode(path.read_bytes()).decode()
    page.evaluate("""([data, name, mime]) => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name, {type: mime}));
        const zone = document.querySelector('#dropzone');
        for (const type of ['dragenter', 'dragover', 'drop'])
            zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", [data, path.name, mime])


# -- real semantics (built-in model) ---------------------------------------------------------------------------------
def test_type_a_query_and_see_the_right_first_result(page, builtin_url):
    page.goto(builtin_url + "/")
    for text, expected in [("a cat", "chelsea.jpg"), ("a rocket", "rocket.jpg"), ("a motorcycle", "motorcycle.jpg")]:
        search_for(page, text)
        wait_summary(page, text)
        assert first_results(page) == [expected], text
    assert "result" in page.inner_text("#summary") and page.is_hidden("#message")
    assert page.evaluate("location.search") == "?q=a+motorcycle"
    search_for(page, "a cat")
    wait_summary(page, "a cat")
    page.wait_for_function("() => [...document.querySelectorAll('#results img')].slice(0, 3)"
                           ".every(i => i.naturalWidth)")
    shot(page, "search-a-cat")


def test_drop_an_image_and_see_its_near_duplicate_first(page, builtin_url, sample_photos):
    _, query = sample_photos
    page.goto(builtin_url + "/")
    with page.expect_response(lambda r: "/api/search" in r.url and r.request.method == "POST"):
        drop_file(page, query)
    wait_summary(page, "example image")
    assert first_results(page) == ["coffee.jpg"]
    assert page.is_visible("#query-image img")
    shot(page, "drop-an-image")
    with page.expect_response(lambda r: "/api/browse" in r.url):  # the grid follows: no query left, so browsing
        page.click("#clear-image")
    assert page.is_hidden("#query-image")
    page.wait_for_function("() => !document.querySelector('#summary').textContent.includes('example image')")


def test_paste_an_image_and_combine_it_with_words(page, builtin_url, sample_photos):
    folder, _ = sample_photos
    page.goto(builtin_url + "/")
    page.fill("#q", "a cup of coffee")
    data = base64.b64encode((folder / "rocket.jpg").read_bytes()).decode()
    with page.expect_response(lambda r: "/api/search" in r.url and r.request.method == "POST") as res:
        page.evaluate("""data => {
            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], 'pasted.jpg', {type: 'image/jpeg'}));
            document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true}));
        }""", data)
    assert res.value.json()["query"] == "a cup of coffee + <uploaded image>"
    wait_summary(page, "a cup of coffee + the example image")
    assert set(first_results(page, 2)) == {"coffee.jpg", "rocket.jpg"}


# -- page mechanics (test double) ------------------------------------------------------------------------------------
def test_open_the_detail_view_navigate_and_more_like_this(page, colour_url):
    page.goto(colour_url + "/")
    search_for(page, "blue")
    first = first_results(page, 2)
    assert all(name.startswith("blue") for name in first)
    page.focus("#results .tile >> nth=0")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.dataset.path").endswith(first[1])
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Enter")
    page.wait_for_selector("#detail[open]")
    assert page.inner_text("#detail-title") == first[0]
    page.wait_for_function("() => document.querySelector('#detail-fields').textContent.includes('320 × 240')")
    fields = page.inner_text("#detail-fields")
    assert "path" in fields and "JPEG" in fields and "a blue shape on grey" in fields and "photographer" in fields
    image_id = page.evaluate("document.querySelector('#results .tile').dataset.id")
    assert page.get_attribute("#original", "href") == f"/api/images/{image_id}"
    page.wait_for_function("() => document.querySelector('#detail-img').src.endsWith('/api/images/' + "
                           f"{image_id}) && document.querySelector('#detail-img').naturalWidth === 320")
    shot(page, "detail-view")
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"() => document.querySelector('#detail-title').textContent === {first[1]!r}")
    with page.expect_response(lambda r: "/similar" in r.url):
        page.click("#similar")
    assert page.is_hidden("#detail") or not page.evaluate("document.querySelector('#detail').open")
    assert page.input_value("#q").startswith("id:")
    wait_summary(page, "images like")
    names = first_results(page, 3)
    assert names[0].startswith("blue") and first[1] not in names  # more like it, itself left out
    page.keyboard.press("Escape")


def test_tag_an_image_then_filter_by_the_tag_chip(page, colour_url):
    page.goto(colour_url + "/")
    search_for(page, "green")
    tagged = first_results(page)[0]
    page.click("#results .tile >> nth=0")
    page.wait_for_selector("#detail[open]")
    page.fill("#detail-tag-input", "Garden Party")
    with page.expect_response(lambda r: r.url.endswith("/tags") and r.request.method == "POST"):
        page.press("#detail-tag-input", "Enter")
    page.wait_for_selector("#detail-tags .chip[data-tag='garden party']")
    page.keyboard.press("Escape")
    page.fill("#tag-input", "garden party")
    with page.expect_response(lambda r: "tags=garden+party" in r.url):
        page.press("#tag-input", "Enter")
    wait_summary(page, 'tag:"garden party"')
    assert page.eval_on_selector_all("#results .tile", "ts => ts.length") == 1 and first_results(page) == [tagged]
    shot(page, "tag-chip")
    page.click("#results .tile >> nth=0")
    page.wait_for_selector("#detail[open]")
    with page.expect_response(lambda r: "/tags/garden%20party" in r.url and r.request.method == "DELETE"):
        page.click("#detail-tags .chip[data-tag='garden party'] button")
    page.wait_for_selector("#detail-tags .chip", state="detached")


def test_apply_a_threshold_and_see_nothing_found(page, colour_url):
    page.goto(colour_url + "/")
    search_for(page, "red")
    first_results(page)
    with page.expect_response(lambda r: "threshold=0.9999" in r.url):
        page.fill("#threshold", "0.9999")
        page.dispatch_event("#threshold", "change")
    page.wait_for_selector("#message[data-kind='nothing']")
    assert "Nothing found" in page.inner_text("#message") and page.locator("#results .tile").count() == 0
    shot(page, "nothing-found")


def test_apply_a_folder_filter_and_a_filter_on_any_field(page, colour_url):
    page.goto(colour_url + "/")
    page.click("#filters summary")
    page.fill("#f-folder", "home")
    assert page.inner_text("#filter-count") == "1"
    search_for(page, "red")
    paths = page.eval_on_selector_all("#results .tile", "ts => ts.map(t => t.dataset.path)")
    assert len(paths) == 6 and all("/home/" in p for p in paths)
    page.click("#clear-filters")
    page.click("#add-field")
    page.fill(".field-row .f-key", "photographer")
    page.fill(".field-row .f-value", "Alec Weir")
    shot(page, "field-filter")
    search_for(page, "red")
    page.wait_for_function("() => document.querySelectorAll('#results .tile').length === 1")
    assert first_results(page) == ["blue_02.jpg"]


def test_a_bad_query_shows_the_error(page, colour_url):
    page.goto(colour_url + "/")
    search_for(page, "/etc/passwd")
    page.wait_for_selector("#message[data-kind='error']")
    assert "upload the image" in page.inner_text("#message")


def test_empty_library_and_indexing_progress(page, tmp_path, monkeypatch):
    class Slow(ColourEmbedder):
        def embed_pixels(self, pixels):
            time.sleep(0.3)
            return super().embed_pixels(pixels)

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(12):
        draw_photo("red", seed=i).save(folder / f"p{i}.jpg")
    monkeypatch.setenv("PICSEEK_BATCH_SIZE", "2")
    app = create_app(Library(tmp_path / "lib", model=Slow()),
                     ServerSettings(folders=(str(folder),), index_workers=0, index_on_start=False))
    with running(app) as url:
        page.goto(url + "/")
        page.wait_for_selector("#message[data-kind='empty']")
        assert "No images yet" in page.inner_text("#message")
        shot(page, "empty-library")
        page.click("#message button")  # "Index now"
        page.wait_for_function("() => document.querySelector('#status').textContent.includes('indexing')")
        assert page.is_visible("#progress")
        shot(page, "indexing-progress")
        page.wait_for_function("() => document.querySelector('#status').textContent.startsWith('12 images')")
        assert page.is_hidden("#progress")


def test_small_screen_layout(browser_context, colour_url):
    pg = browser_context.new_page()
    pg.set_viewport_size({"width": 390, "height": 844})
    try:
        pg.goto(colour_url + "/")
        search_for(pg, "orange")
        first_results(pg)
        shot(pg, "phone")
        wide = pg.evaluate("""() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > 390.5).map(e => e.id || e.className || e.tagName)""")
        assert pg.evaluate("document.documentElement.scrollWidth") <= 390, f"wider than a phone: {wide}"
    finally:
        pg.close()


# -- correct under concurrency, states, browse, URL state, the rank explained, phone (issue 16) ------------------------
def summary_text(page) -> str:
    return page.inner_text("#summary")


def tile_names(page) -> list[str]:
    return [Path(p).name for p in page.eval_on_selector_all("#results .tile", "ts => ts.map(t => t.dataset.path)")]


class Held:
    """Holds the first /api/search request whose URL contains `needle` until released; the rest pass."""

    def __init__(self, page, needle: str):
        self.needle, self.routes = needle, []
        page.route("**/api/search?*", self)

    def __call__(self, route):
        if self.needle in route.request.url and not self.routes:
            self.routes.append(route)
        else:
            route.continue_()

    def release(self):
        for route in self.routes:
            try:
                route.continue_()
            except Exception:  # noqa: BLE001 - the page aborted it (AbortController): nothing to release
                pass


def wait_loading(page, text: str) -> None:
    page.wait_for_function("t => document.querySelector('#results').getAttribute('aria-busy') === 'true' && "
                           "document.querySelector('#loading').textContent.includes(t)", arg=text)


def test_a_slow_older_answer_never_replaces_a_newer_one(page, colour_url):
    held = Held(page, "q=red")
    page.goto(colour_url + "/")
    page.wait_for_selector("#results .tile")  # the library, newest first
    page.fill("#q", "red")
    page.press("#q", "Enter")
    wait_loading(page, "Searching for “red”")
    assert page.get_attribute("#loading", "role") == "status" and page.is_visible("#loading .spinner")
    shot(page, "loading-desktop")
    page.fill("#q", "blue")  # Enter while the first search runs: starts the new one
    with page.expect_response(lambda r: "q=blue" in r.url):
        page.press("#q", "Enter")
    wait_summary(page, "“blue”")
    assert held.routes, "the first request was held"
    held.release()
    page.wait_for_timeout(400)
    assert page.input_value("#q") == "blue" and "“blue”" in summary_text(page) and "red" not in summary_text(page)
    assert tile_names(page)[0].startswith("blue") and page.get_attribute("#results", "aria-busy") is None
    # A slow first answer, then Sort changed meanwhile: the grid and the line are the sorted search's.
    held2 = Held(page, "q=green")
    page.fill("#q", "green")
    page.press("#q", "Enter")
    wait_loading(page, "“green”")
    with page.expect_response(lambda r: "q=green" in r.url and "sort=newest" in r.url):
        page.select_option("#sort", "newest")
    page.wait_for_function("() => document.querySelector('#summary').textContent.includes('sorted newest first')")
    held2.release()
    page.wait_for_timeout(400)
    assert "“green”" in summary_text(page) and "sorted newest first" in summary_text(page)
    assert page.evaluate("document.querySelector('#summary').dataset.sort") == "newest"


def test_a_fast_older_answer_stays_until_the_slow_newer_one_arrives(page, colour_url):
    page.goto(colour_url + "/")
    held = Held(page, "q=purple")
    search_for(page, "yellow")
    wait_summary(page, "“yellow”")
    page.fill("#q", "purple")
    page.press("#q", "Enter")
    wait_loading(page, "“purple”")
    # While it loads, the (dimmed) grid and its line still agree: both are the yellow search's.
    assert "“yellow”" in summary_text(page) and tile_names(page)[0].startswith("yellow")
    with page.expect_response(lambda r: "q=purple" in r.url):
        held.release()
    wait_summary(page, "“purple”")
    assert tile_names(page)[0].startswith("purple") and page.input_value("#q") == "purple"


def test_errors_are_clear_sentences_with_a_retry(page, colour_url):
    page.goto(colour_url + "/")
    page.wait_for_selector("#results .tile")
    failures = {"mode": "offline"}

    def flaky(route):
        if failures["mode"] == "offline":
            route.abort("connectionrefused")
        elif failures["mode"] == "html500":
            route.fulfill(status=502, content_type="text/html", body="<html><body>502 Bad Gateway</body></html>")
        else:
            route.continue_()

    page.route("**/api/search?*", flaky)
    page.fill("#q", "red")
    page.press("#q", "Enter")
    page.wait_for_selector("#message[data-kind='error']")
    text = page.inner_text("#message")
    assert "cannot be reached" in text and "Failed to fetch" not in text and page.is_visible("#message .retry")
    shot(page, "error-offline-desktop")
    failures["mode"] = "html500"
    page.click("#message .retry")
    page.wait_for_function("() => document.querySelector('#message').textContent.includes('HTTP 502')")
    text = page.inner_text("#message")
    assert "problem answering" in text and "request failed" not in text and "<html>" not in text
    failures["mode"] = "pass"
    with page.expect_response(lambda r: "q=red" in r.url):
        page.click("#message .retry")
    wait_summary(page, "“red”")
    assert page.is_hidden("#message") and tile_names(page)[0].startswith("red")
    page.unroute("**/api/search?*")
    search_for(page, "red + id:999999")  # the API's own message
    page.wait_for_selector("#message[data-kind='error']")
    assert "999999" in page.inner_text("#message")


def test_browse_newest_first_by_month_and_scroll_for_more(page, colour_url):
    pages = []
    page.on("response", lambda r: pages.append(r.url) if "/api/browse" in r.url else None)
    page.goto(colour_url + "/?limit=5")
    page.wait_for_selector("#results .tile")
    assert "All images, newest first" in summary_text(page)
    assert "after=" not in pages[0] and "limit=5" in pages[0]
    for _ in range(10):
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        if page.locator("#results .tile").count() == 12 and page.is_hidden("#more"):
            break
        page.wait_for_timeout(300)
    names = tile_names(page)
    assert len(names) == len(set(names)) == 12 and sum("after=" in u for u in pages) == 2
    assert [int(n[-6:-4]) for n in names] == list(range(11, -1, -1))  # newest (the last made) first
    months = page.eval_on_selector_all("#results .month h2", "hs => hs.map(h => h.textContent)")
    assert len(months) == 6 and months[0].endswith("2023") and len(set(months)) == 6
    assert page.eval_on_selector_all("#results .badges .score", "s => s.length") == 0  # no score: no query
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "browse-desktop")


def test_the_url_holds_the_view_and_back_forward_restore_it(page, colour_url, browser_context):
    page.goto(colour_url + "/")
    page.wait_for_selector("#results .tile")
    page.click("#filters summary")
    page.fill("#f-folder", "home")
    page.select_option("#sort", "newest")
    search_for(page, "red")
    wait_summary(page, "“red”")
    page.wait_for_function("() => location.search.includes('q=red')")
    assert "where=folder%3Dhome" in page.url and "sort=newest" in page.url
    search_for(page, "blue")
    wait_summary(page, "“blue”")
    page.go_back()
    wait_summary(page, "“red”")
    assert page.input_value("#q") == "red" and page.input_value("#f-folder") == "home"
    assert page.input_value("#sort") == "newest" and "filters: folder=home" in summary_text(page)
    assert all("/home/" in p for p in page.eval_on_selector_all("#results .tile", "ts => ts.map(t => t.dataset.path)"))
    page.go_forward()
    wait_summary(page, "“blue”")
    assert page.input_value("#q") == "blue"
    page.click("#results .tile >> nth=1")
    page.wait_for_selector("#detail[open]")
    image_id = page.evaluate("document.querySelectorAll('#results .tile')[1].dataset.id")
    page.wait_for_function(f"() => location.search.includes('open={image_id}')")
    title = page.inner_text("#detail-title")
    copied = page.url
    other = browser_context.new_page()
    try:  # a copied URL reproduces the view, the detail included
        other.goto(copied)
        other.wait_for_selector("#detail[open]")
        assert other.inner_text("#detail-title") == title and other.input_value("#q") == "blue"
        assert other.input_value("#f-folder") == "home" and "“blue”" in other.inner_text("#summary")
    finally:
        other.close()
    page.go_back()  # Back closes the detail view, and the grid stays
    page.wait_for_function("() => !document.querySelector('#detail').open")
    assert "open=" not in page.url and "“blue”" in summary_text(page)


def test_tiles_explain_their_rank_with_alt_text_and_a_heading(page, colour_url):
    page.goto(colour_url + "/")
    search_for(page, "blue")
    wait_summary(page, "“blue”")
    assert page.locator("h1").count() == 1
    tiles = page.eval_on_selector_all("#results .tile", """ts => ts.map(t => ({name: t.dataset.path.split('/').pop(),
        via: t.dataset.via, badge: t.querySelector('.via').hidden ? null : t.querySelector('.via').textContent,
        score: t.querySelector('.score') && t.querySelector('.score').textContent,
        alt: t.querySelector('img').alt}))""")
    described = [t for t in tiles if t["name"] in ("blue_02.jpg", "blue_08.jpg")]
    assert len(described) == 2 and all(t["alt"] == "a blue shape on grey" for t in described)
    assert all(t["via"] == "vector+keyword" and t["badge"] == "keyword" for t in described)
    assert all(t["badge"] is None for t in tiles if t["via"] == "vector")
    assert all(t["score"] and float(t["score"]) == float(t["score"]) for t in tiles)  # shown, not only on hover
    plain = next(t for t in tiles if t["via"] == "vector")
    assert plain["alt"] == plain["name"]
    shot(page, "search-desktop")


def test_phone_layout_folds_the_controls(browser_context, colour_url):
    pg = browser_context.new_page()
    pg.set_viewport_size({"width": 390, "height": 844})
    try:
        pg.goto(colour_url + "/")
        pg.wait_for_selector("#results .tile")
        shot(pg, "browse-phone")
        assert pg.is_hidden("#dropzone") and pg.is_hidden("#filters") and pg.is_visible("#fold-toggle")
        search_for(pg, "orange")
        wait_summary(pg, "“orange”")
        top = pg.evaluate("document.querySelector('#results .tile').getBoundingClientRect().top")
        assert top < 250, f"the first result starts {top} px down"
        shot(pg, "search-phone")
        pg.click("#fold-toggle")
        assert pg.get_attribute("#fold-toggle", "aria-expanded") == "true" and pg.is_visible("#filters")
        pg.click("#filters summary")
        pg.click("#add-field")
        pg.fill(".field-row .f-key", "a_rather_long_field_name_for_a_phone")
        pg.fill(".field-row .f-value", "a value that is longer than the screen is wide, surely")
        width = pg.evaluate("document.documentElement.scrollWidth")
        wide = pg.evaluate("""() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > 390.5).map(e => e.id || e.className || e.tagName)""")
        assert width <= 390, f"wider than a phone: {wide}"
        shot(pg, "filters-phone")
        pg.route("**/api/search?*", lambda route: route.abort("connectionrefused"))
        pg.fill(".field-row .f-key", "")
        pg.fill("#q", "orange")
        pg.press("#q", "Enter")
        pg.wait_for_selector("#message[data-kind='error']")
        pg.click("#fold-toggle")
        shot(pg, "error-phone")
    finally:
        pg.close()

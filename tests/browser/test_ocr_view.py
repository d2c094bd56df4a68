"""The detail view's text in the image (issue 19): for a hit whose `ocr` holds lines read in the image, the page shows
them as text beside the image, marks the lines that match the search, and outlines those lines' boxes over the image
at the right place (fractions of the oriented image, on a desktop and on a phone). The API's answer is given the
`ocr` field in the browser (`page.route`), for a real indexed image, so the page is tested on its own."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from picseek.library import Library

import browsers
from browsers import DESKTOP, PHONE, serving, shot
from conftest import ColourEmbedder, draw_photo

browser_context, page = browsers.browser_context, browsers.page  # the fixtures

LINES = ["QUARTERLY REPORT", "Quarterly revenue grew by twelve percent", "Costs stayed flat", "Thank you"]
MATCHED = {0, 1}  # the lines the search matched
SIZE = (800, 600)


def _font(size: int):
    path = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    return ImageFont.truetype(str(path), size) if path.is_file() else ImageFont.load_default(size)


@pytest.fixture(scope="module")
def document_url(tmp_path_factory):
    """A library of a rendered document and two photos; the document's lines' boxes as fractions."""
    folder = tmp_path_factory.mktemp("ocr-photos")
    img = Image.new("RGB", SIZE, (250, 250, 246))
    draw = ImageDraw.Draw(img)
    boxes = []
    for i, text in enumerate(LINES):
        xy = (60, 70 + i * 110)
        x0, y0, x1, y1 = draw.textbbox(xy, text, font=_font(40 if i == 0 else 30))
        draw.text(xy, text, font=_font(40 if i == 0 else 30), fill=(20, 20, 30))
        boxes.append([[x0 / SIZE[0], y0 / SIZE[1]], [x1 / SIZE[0], y0 / SIZE[1]],
                      [x1 / SIZE[0], y1 / SIZE[1]], [x0 / SIZE[0], y1 / SIZE[1]]])
    img.save(folder / "report.png")
    for i, colour in enumerate(("red", "blue")):
        draw_photo(colour, seed=i).save(folder / f"{colour}.jpg", quality=90)
    library = Library(tmp_path_factory.mktemp("ocr-lib") / "lib", model=ColourEmbedder())
    with serving(library, (folder,)) as (url, _app):
        yield url, boxes


def _with_ocr(page, boxes):
    """Each /api/search answer as the server gives it, with `ocr` on each hit: the document's lines, null elsewhere."""
    ocr = {"text": "\n".join(LINES), "lines": [
        {"text": t, "box": b, "score": 0.97, "matched": i in MATCHED} for i, (t, b) in enumerate(zip(LINES, boxes))]}

    def fulfil(route):
        response = route.fetch()
        body = response.json()
        for hit in body["hits"]:
            hit["ocr"] = ocr if hit["path"].endswith("report.png") else None
        route.fulfill(response=response, json=body)

    page.route("**/api/search?*", fulfil)


def _open(page, url, name):
    page.goto(url + "/")
    page.fill("#q", "white")
    with page.expect_response(lambda r: "/api/search" in r.url):
        page.press("#q", "Enter")
    page.wait_for_selector("#results .tile")
    page.click(f"#results .tile[data-path$='{name}']")
    page.wait_for_selector("#detail[open]")
    page.wait_for_function("() => document.querySelector('#detail-img').complete "
                           "&& document.querySelector('#detail-img').naturalWidth > 0")


def _check_boxes(page, boxes):
    """Each outline sits on its line's box in the image as shown (within 1.5 px), whatever size it is shown at."""
    drawn = page.evaluate("""() => {
        const img = document.querySelector('#detail-img').getBoundingClientRect();
        return {img: [img.left, img.top, img.width, img.height],
                boxes: [...document.querySelectorAll('#detail-boxes polygon')].map(p => {
                    const r = p.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })};
    }""")
    left, top, width, height = drawn["img"]
    assert width > 100 and height > 50
    assert len(drawn["boxes"]) == len(MATCHED)
    for got, i in zip(drawn["boxes"], sorted(MATCHED)):
        (x0, y0), _, (x1, y1), _ = boxes[i]
        want = [left + x0 * width, top + y0 * height, left + x1 * width, top + y1 * height]
        # (the outline's stroke is not in an SVG element's box: its geometry is)
        assert all(abs(g - w) <= 1.5 for g, w in zip(got, want)), (i, got, want)


def test_the_text_is_shown_and_the_matched_lines_are_outlined(page, document_url):
    url, boxes = document_url
    _with_ocr(page, boxes)
    _open(page, url, "report.png")
    assert page.is_visible("#detail-ocr")
    shown = page.inner_text("#detail-ocr-lines")
    assert [line.strip() for line in shown.splitlines() if line.strip()] == LINES
    assert page.eval_on_selector_all("#detail-ocr-lines mark", "ms => ms.map(m => m.textContent)") == \
        [LINES[i] for i in sorted(MATCHED)]
    assert "2 of 4 lines match" in page.inner_text("#detail-ocr-note")
    assert page.get_attribute("#detail-boxes", "aria-hidden") == "true"
    _check_boxes(page, boxes)
    shot(page, "ocr-detail")

    page.keyboard.press("Escape")  # another image: no text, no outlines, no section
    # (closing goes back in the page's history: let that navigation end before starting another one)
    page.wait_for_function("() => !new URLSearchParams(location.search).has('open')")
    _open(page, url, "red.jpg")
    assert page.is_hidden("#detail-ocr")
    assert page.eval_on_selector_all("#detail-boxes polygon", "ps => ps.length") == 0


def test_the_outlines_follow_the_image_on_a_phone_and_a_resized_window(browser_context, document_url):
    url, boxes = document_url
    pg = browser_context.new_page()
    try:
        pg.set_viewport_size(PHONE)
        _with_ocr(pg, boxes)
        _open(pg, url, "report.png")
        _check_boxes(pg, boxes)
        shot(pg, "ocr-detail-phone")
        assert pg.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        pg.set_viewport_size(DESKTOP)
        pg.wait_for_timeout(100)
        _check_boxes(pg, boxes)
    finally:
        pg.close()



def test_the_text_view_has_no_serious_accessibility_violations(page, document_url):
    from test_a11y import AXE, violations  # (axe-core, as the accessibility tests run it)

    from needs import need_file

    axe_source = need_file(AXE, "npm ci --prefix tests/browser, as .ci/run does").read_text(encoding="utf-8")
    url, boxes = document_url
    _with_ocr(page, boxes)
    _open(page, url, "report.png")
    assert page.is_visible("#detail-ocr")
    assert violations(page, axe_source) == []

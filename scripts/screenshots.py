"""Make the README's screenshots of the web page: docs/img/search.png and docs/img/browse.png.

    python scripts/screenshots.py                 # needs picseek[server], scikit-image, playwright and chromium
    python scripts/screenshots.py --out /tmp/shots --chromium /usr/bin/chromium

Real photos that ship with scikit-image (as examples/quickstart.ipynb uses) are written to a temp folder with file
times five days apart over June and July 2025 (so browsing shows two months), indexed with the built-in model by
`picseek index`, and served by `picseek serve`; headless chromium (Playwright) takes the page at 1280x800, which
is then scaled to 900 px wide and reduced to 256 colours, so each PNG stays small. Nothing is fetched from the
network.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.request import urlopen

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from serve_load import start_server  # noqa: E402  (picseek serve in a subprocess, its URL)

ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1280, "height": 800}
WIDTH = 900


def sample_photos(folder: Path) -> list[Path]:
    import skimage.data as data
    from PIL import Image

    samples = {"cat": data.chelsea(), "coffee": data.coffee(), "astronaut": data.astronaut(), "rocket": data.rocket(),
               "motorcycle": data.stereo_motorcycle()[0], "galaxies": data.hubble_deep_field(),
               "photographer": data.camera(), "clock": data.clock(), "coins": data.coins(), "moon": data.moon(),
               "retina": data.retina(), "tissue": data.immunohistochemistry()}
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    when = 1_748_779_200  # 2025-06-01T12:00Z; then one photo every 5 days
    for i, (name, pixels) in enumerate(samples.items()):
        path = folder / f"{name}.jpg"
        Image.fromarray(pixels).convert("RGB").save(path, quality=90)
        os.utime(path, (when + i * 5 * 86_400,) * 2)
        paths.append(path)
    return paths


def picseek(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "-m", "picseek.cli", *args], env=env, check=True)


def small_png(raw: Path, out: Path) -> int:
    """Scale to WIDTH px wide and keep 256 colours: a screenshot of photos stays well under 150 KB."""
    from PIL import Image

    im = Image.open(raw).convert("RGB")
    im = im.resize((WIDTH, round(im.height * WIDTH / im.width)), Image.LANCZOS)
    im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    return out.stat().st_size


def screenshots(url: str, out: Path, raw: Path, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    loaded = "() => [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(60_000)
        urlopen(url + "/api/search?q=warm+up", timeout=300).read()  # the model loaded: the time shown is a search's
        page.goto(url + "/")
        page.wait_for_selector("#results .tile")
        page.wait_for_function(loaded)
        page.wait_for_timeout(500)
        page.screenshot(path=str(raw / "browse.png"))
        page.fill("#q", "a cat")
        page.press("#q", "Enter")
        page.wait_for_function("() => document.querySelector('#summary').textContent.includes('a cat')")
        page.wait_for_function(loaded)
        page.wait_for_timeout(500)
        page.screenshot(path=str(raw / "search.png"))
        browser.close()
    for name in ("search", "browse"):
        size = small_png(raw / f"{name}.png", out / f"{name}.png")
        print(f"{out / f'{name}.png'}: {size / 1024:.0f} KB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="where the PNGs go (default docs/img)")
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="the chromium to drive (default Debian's)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("PICSEEK_TOKEN", None)
    with tempfile.TemporaryDirectory(prefix="picseek-screenshots-") as tmp:
        work = Path(tmp)
        photos, library = work / "photos", work / "library"
        sample_photos(photos)
        picseek("-q", "-L", str(library), "index", str(photos), "--model", "builtin", env=env)
        proc, url = start_server(library, ["--no-index"], env)
        try:
            screenshots(url, args.out, work, args.chromium)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())

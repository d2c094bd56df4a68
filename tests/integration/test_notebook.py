"""examples/quickstart.ipynb runs from top to bottom in a fresh kernel (this venv's Python) and shows what it says:
the built-in model finds the cat by words, by an example image, and with words added to the image; each search's
hits draw themselves as a grid of thumbnails (Hits._repr_html_), one hit as its thumbnail, and a filter that
matches nothing gives no hits and a note. The kernel inherits this test's environment (private cache and config,
hub off, TMPDIR)."""
from __future__ import annotations

from pathlib import Path

import pytest

from needs import need_module

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "quickstart.ipynb"


def _cell(nb, tag: str):
    return next(c for c in nb.cells if tag in c.metadata.get("tags", []))


def _hit_names(cell) -> list[str]:
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    return [line.split()[-1] for line in text.splitlines() if line[:1].isdigit()]


def _html(cell) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in cell.outputs
                   if o.output_type in ("display_data", "execute_result"))


def _has_png(cell) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.outputs if o.output_type == "display_data")


@pytest.mark.slow
def test_quickstart_notebook_runs_and_finds_the_cat(tmp_path, monkeypatch):
    for module in ("nbclient", "nbformat", "ipykernel", "skimage"):
        need_module(module)
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's working folder lands here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    # (jupyter starts the "python3" kernel with this interpreter: `import picseek` in the first cell proves it)

    index_out = "".join(o.get("text", "") for o in _cell(nb, "index").outputs if o.output_type == "stream")
    assert "8 added, 0 errors" in index_out
    assert _hit_names(_cell(nb, "text-search"))[0] == "cat.jpg"
    assert _hit_names(_cell(nb, "text-search-2"))[0] == "motorcycle.jpg"
    assert _hit_names(_cell(nb, "image-search"))[0] == "cat.jpg"
    assert set(_hit_names(_cell(nb, "image-text-search"))[:2]) == {"cat.jpg", "coffee.jpg"}
    for tag in ("text-search", "text-search-2", "image-search", "image-text-search"):
        grid = _html(_cell(nb, tag))
        assert "picseek-hits" in grid and grid.count('<img src="data:image/jpeg;base64,') == 4, \
            f"the {tag} cell drew no image grid"
        assert len(_hit_names(_cell(nb, tag))) == 4
    assert _has_png(_cell(nb, "image-search"))  # the query image
    one = _html(_cell(nb, "one-hit"))
    assert one.count('<img src="data:image/jpeg;base64,') == 1
    assert _hit_names(_cell(nb, "image-text-search"))[0] in one  # the best hit of the cell before
    assert "0 hits: no image has camera~leica" in "".join(o.get("text", "") for o in _cell(nb, "no-match").outputs)
    assert list(tmp_path.glob("picseek-quickstart-*/library/picseek.db"))

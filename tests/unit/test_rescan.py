"""A re-scan that finds nothing to embed never loads the model; one that finds a new file does."""
from picseek import Library
from picseek.models import registry

from conftest import ColourEmbedder, make_folder


def test_unchanged_rescan_does_not_load_the_model(tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    make_folder(photos, 6)
    with Library(tmp_path / "lib", model=ColourEmbedder()) as lib:
        assert lib.index([photos], workers=0).added == 6
    loads = []
    monkeypatch.setattr(registry, "load_embedder", lambda name, **kw: loads.append(name) or ColourEmbedder())
    with Library(tmp_path / "lib") as lib:
        report = lib.index([photos], workers=0)
        assert (report.unchanged, report.embedded, loads) == (6, 0, [])
        (photos / "img_000.jpg").rename(photos / "moved.jpg")  # a move needs no model either
        assert lib.index([photos], workers=0).moved == 1 and loads == []
        make_folder(photos, 1, prefix="new")
        report = lib.index([photos], workers=0)
        assert report.added == 1 and loads == ["test-colour"]
        assert lib.search("something red", limit=1)[0].path.endswith("moved.jpg")

"""Model names: the ready-ONNX short names, their `-hf` twins, the older `-onnx` aliases, how a library's recorded
model is reopened (spec_for_record) and what `auto` picks. Nothing downloads: the hub is off, caches are faked."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from picseek.errors import ModelError, ModelMismatchError
from picseek.library import Library
from picseek.models import registry
from picseek.models.base import Backend, ModelSpec

from conftest import ColourEmbedder, make_folder

pytestmark = pytest.mark.usefixtures("offline_hub")  # tests/conftest.py: hub off, private empty cache

SHORT = ("clip-vit-b-32", "clip-vit-b-16", "clip-vit-l-14", "laion-vit-b-32", "siglip-base", "siglip2-base")
HF_ID = "hf:openai/clip-vit-base-patch32@3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268"
ONNX_ID = "onnx:immich-app/ViT-B-32__openai@0123456789abcdef0123456789abcdef01234567"


def test_short_names_are_ready_onnx_and_their_hf_twins_the_torch_conversion():
    for name in (*SHORT, "mclip-vit-b-32"):
        spec = registry.resolve(name)
        assert spec.backend == "onnx" and spec.source.startswith("immich-app/") and spec.dim
    for name in SHORT:
        twin = registry.resolve(f"{name}-hf")
        assert twin.backend == "hf" and twin.dim == registry.SPECS[name].dim
        assert registry.extra_for(twin) == "torch" and registry.extra_for(registry.SPECS[name]) is None
    assert registry.resolve("clip-vit-b-32").source == "immich-app/ViT-B-32__openai"
    assert registry.resolve("clip-vit-b-32-hf").source == "openai/clip-vit-base-patch32"
    assert registry.SPECS[registry.DEFAULT_DOWNLOAD].backend == "onnx"


def test_the_older_onnx_names_are_aliases_listed_nowhere():
    assert set(registry.ALIASES) == {f"{n}-onnx" for n in (*SHORT, "mclip-vit-b-32")}
    for alias, name in registry.ALIASES.items():
        assert registry.resolve(alias) is registry.SPECS[name]
    listed = {r["name"] for r in registry.list_models()}
    assert listed == set(registry.SPECS) and not listed & set(registry.ALIASES)


def test_spec_for_record_follows_the_recorded_backend():
    sfr = registry.spec_for_record
    assert sfr("clip-vit-b-32", HF_ID).name == "clip-vit-b-32-hf"  # made when the short name meant torch
    assert sfr("siglip2-base", "hf:google/siglip2-base-patch16-224@abc").name == "siglip2-base-hf"
    assert sfr("clip-vit-b-32", ONNX_ID).name == "clip-vit-b-32"
    assert sfr("clip-vit-b-32-onnx", ONNX_ID).name == "clip-vit-b-32"  # an alias recorded by an older picseek
    assert sfr("clip-vit-b-32-hf", HF_ID).name == "clip-vit-b-32-hf"
    assert sfr("clip-vit-b-32").name == "clip-vit-b-32"  # no model id: the name as it resolves
    assert sfr("builtin", "builtin:effnet@x").name == "builtin"
    assert sfr("mclip-vit-b-32", "hf:M-CLIP/x@1").name == "mclip-vit-b-32"  # no twin: the check refuses it later
    assert sfr("hf:org/clip", "hf:org/clip@1").backend == "hf"
    with pytest.raises(ModelError, match="unknown model"):
        sfr("test-colour", "test-colour@1")
    assert registry.name_for_record("clip-vit-b-32", HF_ID) == "clip-vit-b-32-hf"
    assert registry.name_for_record("test-colour", "test-colour@1") == "test-colour"  # e.g. a model object's name


def test_an_onnx_model_id_does_not_depend_on_the_name_it_was_loaded_by(monkeypatch, tmp_path):
    """onnx_repo records `onnx:{repository}@{revision}`: the alias and the short name give one id."""
    from picseek.models import hub, onnx_repo

    folder = tmp_path / "snapshots" / "0123abc"
    folder.mkdir(parents=True)
    monkeypatch.setattr(hub, "load_repo", lambda source, load: folder)
    seen, real_locate = [], onnx_repo._locate

    def locate(name, source):
        found, label, revision = real_locate(name, source)
        seen.append(f"onnx:{label}@{revision}")  # what load() records as the model id
        return found, label, revision

    monkeypatch.setattr(onnx_repo, "_locate", locate)
    for name in ("clip-vit-b-32", "clip-vit-b-32-onnx"):
        with pytest.raises(ModelError):  # the empty snapshot has no config.json; the id is what matters here
            onnx_repo.load(registry.resolve(name))
    assert seen == ["onnx:immich-app/ViT-B-32__openai@0123abc"] * 2


# ------------------------------------------------------------------------------------------------------ auto


@pytest.fixture
def fake_caches(monkeypatch):
    """`cached` holds the spec names is_cached answers True for; the hub answers as `hub` says; torch as `torch`."""
    state = {"cached": set(), "hub": False, "torch": True}
    monkeypatch.setattr(registry, "is_cached", lambda spec: spec.name in state["cached"])
    monkeypatch.setattr(registry.hub, "hub_reachable", lambda timeout=2.0: state["hub"])
    real = registry.find_spec
    monkeypatch.setattr(registry, "find_spec",
                        lambda name: None if name == "torch" and not state["torch"] else real(name))
    return state


def test_auto_prefers_a_cached_ready_onnx_model(fake_caches):
    fake_caches["cached"] = {"clip-vit-b-32-hf", "siglip-base", "clip-vit-l-14"}
    assert registry.resolve_auto().name == "clip-vit-l-14"  # today's order, ONNX before any hf
    fake_caches["cached"] = {"mclip-vit-b-32", "clip-vit-b-16-hf"}
    assert registry.resolve_auto().name == "mclip-vit-b-32"


def test_auto_takes_a_cached_hf_model_only_where_torch_is_installed(fake_caches, caplog):
    fake_caches["cached"] = {"siglip-base-hf", "clip-vit-b-16-hf"}
    assert registry.resolve_auto().name == "clip-vit-b-16-hf"
    fake_caches["torch"] = False
    with caplog.at_level(logging.WARNING, logger="picseek.models.registry"):
        assert registry.resolve_auto().name == "builtin"  # offline: the built-in model
    assert "clip-vit-b-16-hf, siglip-base-hf" in caplog.text and "picseek[torch]" in caplog.text
    assert "--model clip-vit-b-32" in caplog.text
    caplog.clear()
    fake_caches["hub"] = True
    with caplog.at_level(logging.WARNING, logger="picseek.models.registry"):
        spec = registry.resolve_auto()
    assert spec.name == "clip-vit-b-32" and spec.backend == "onnx"
    assert "downloading clip-vit-b-32 (immich-app/ViT-B-32__openai)" in caplog.text


def test_auto_with_nothing_cached(fake_caches, caplog):
    fake_caches["hub"] = True
    assert registry.resolve_auto() is registry.SPECS["clip-vit-b-32"]
    fake_caches["hub"] = False
    with caplog.at_level(logging.WARNING, logger="picseek.models.registry"):
        assert registry.resolve_auto() is registry.SPECS["builtin"]
    assert "unreachable" in caplog.text and "torch" not in caplog.text


# --------------------------------------------------------------------------------------------- libraries


def _library_with(path, photos, name: str, model_id: str) -> None:
    emb = ColourEmbedder(name)
    emb.model_id = model_id
    with Library(path, model=emb) as lib:
        assert lib.index([photos], workers=0).added == 3


@pytest.fixture
def loads(monkeypatch):
    """registry.load_embedder that builds nothing: records the spec and returns a double with that model id."""
    got = []

    def load(name, **kw):
        spec = registry.resolve(name)
        got.append(spec.name)
        emb = ColourEmbedder(spec.name)
        emb.model_id = HF_ID if spec.backend == "hf" else ONNX_ID
        return emb

    monkeypatch.setattr(registry, "load_embedder", load)
    return got


def test_a_library_made_by_the_torch_conversion_reopens_with_it(tmp_path, loads):
    photos = tmp_path / "photos"
    make_folder(photos, 3)
    _library_with(tmp_path / "lib", photos, "clip-vit-b-32", HF_ID)  # recorded before the short name changed
    with Library(tmp_path / "lib") as lib:
        assert lib.embedder().model_id == HF_ID and loads == ["clip-vit-b-32-hf"]
    with Library(tmp_path / "lib", model="clip-vit-b-32") as lib:  # the recorded name, as typed then
        assert lib.embedder().model_id == HF_ID
    with Library(tmp_path / "lib", model="clip-vit-b-32-hf") as lib:
        assert lib.embedder().model_id == HF_ID
    with Library(tmp_path / "lib", model="clip-vit-b-32-onnx") as lib, \
            pytest.raises(ModelMismatchError, match="indexed with clip-vit-b-32-hf, not clip-vit-b-32"):
        lib.embedder()
    with Library(tmp_path / "lib") as lib:  # a rebuild without --model keeps the recorded model
        lib.index([photos], workers=0, rebuild=True)
        assert lib.recorded_model["model_id"] == HF_ID and loads[-1] == "clip-vit-b-32-hf"
    with Library(tmp_path / "lib", model="clip-vit-b-32") as lib:  # naming the short name moves it to ready ONNX
        lib.index([photos], workers=0, rebuild=True)
        assert lib.recorded_model["model_id"] == ONNX_ID and loads[-1] == "clip-vit-b-32"


def test_a_library_recorded_under_an_alias_reopens(tmp_path, loads):
    photos = tmp_path / "photos"
    make_folder(photos, 3)
    _library_with(tmp_path / "lib", photos, "clip-vit-b-32-onnx", ONNX_ID)
    for model in (None, "clip-vit-b-32", "clip-vit-b-32-onnx"):
        with Library(tmp_path / "lib", model=model) as lib:
            assert lib.embedder().model_id == ONNX_ID
    assert set(loads) == {"clip-vit-b-32"}
    with Library(tmp_path / "lib", model="clip-vit-b-32-hf") as lib, pytest.raises(ModelMismatchError):
        lib.embedder()


def test_spark_builds_the_recorded_model(tmp_path, loads):
    from picseek.scale.spark import model_for_library

    photos = tmp_path / "photos"
    make_folder(photos, 3)
    _library_with(tmp_path / "old", photos, "clip-vit-b-32", HF_ID)
    _library_with(tmp_path / "alias", photos, "siglip-base-onnx", "onnx:immich-app/ViT-B-16-SigLIP__webli@1")
    with Library(tmp_path / "old") as old, Library(tmp_path / "alias") as alias:
        assert model_for_library(old, None) == model_for_library(old, "clip-vit-b-32") == "clip-vit-b-32-hf"
        assert model_for_library(alias, "siglip-base") == "siglip-base"
        with pytest.raises(ModelMismatchError, match="indexed with clip-vit-b-32-hf"):
            model_for_library(old, "clip-vit-b-32-onnx")


def test_a_library_of_a_model_the_registry_cannot_name_still_says_which_it_holds(tmp_path):
    photos = tmp_path / "photos"
    make_folder(photos, 3)
    _library_with(tmp_path / "lib", photos, "test-colour", "test-colour@1")  # a model object passed from Python
    with Library(tmp_path / "lib", model="clip-vit-b-32") as lib, \
            pytest.raises(ModelMismatchError, match="indexed with test-colour, not clip-vit-b-32"):
        lib.embedder()


def test_models_say_which_extra_each_needs():
    rows = {r["name"]: r for r in registry.list_models()}
    assert rows["builtin"]["extra"] is None and rows["clip-vit-b-32"]["extra"] is None
    assert rows["clip-vit-b-32-hf"]["extra"] == "torch"
    assert {r["extra"] for r in rows.values()} == {None, "torch"}


# ----------------------------------------------------------------------------------- backends from elsewhere


class ToyEmbedder(ColourEmbedder):
    """A plugin's model: ColourEmbedder's deterministic vectors, turned by the colour its name says, so that two toy
    models differ; named `toy:SOURCE` and recording the model id `toy:SOURCE@1`, as a backend should."""

    def __init__(self, spec: ModelSpec):
        super().__init__(spec.name)
        self.model_id = f"toy:{spec.source}@1"
        self.shift = sum(spec.source.encode()) % 8

    def embed_pixels(self, pixels):
        return {k: np.roll(v, self.shift, axis=1) for k, v in super().embed_pixels(pixels).items()}

    def embed_texts(self, texts):
        return np.roll(super().embed_texts(texts), self.shift, axis=1)


def _toy_spec(source: str) -> ModelSpec:
    if not source:
        raise ModelError("toy: needs a colour")
    return ModelSpec(f"toy:{source}", "toy", source, f"toy model {source}", dim=8)


def _toy_load(spec: ModelSpec, device: str = "cpu", precision: str | None = None) -> ToyEmbedder:
    return ToyEmbedder(spec)


@pytest.fixture
def toy(monkeypatch):
    """A toy backend registered in this process only (the table as it was is back after the test); the set it
    returns holds the sources its `cached` check answers True for."""
    monkeypatch.setattr(registry, "_registered", {})
    monkeypatch.setattr(registry, "_imported", {})
    cached: set[str] = set()
    registry.register_backend(Backend("toy", _toy_load, spec=_toy_spec, cached=lambda spec: spec.source in cached,
                                      extra="toy-extra"))
    return cached


def test_a_registered_backend_resolves_loads_and_reopens_by_its_recorded_name(toy):
    spec = registry.resolve("toy:red")
    assert (spec.name, spec.backend, spec.source) == ("toy:red", "toy", "red")
    emb = registry.load_embedder("toy:red")
    assert isinstance(emb, ToyEmbedder) and (emb.name, emb.model_id) == ("toy:red", "toy:red@1")
    again = registry.spec_for_record(emb.name, emb.model_id)  # what a library records, back to the backend
    assert again == spec and registry.name_for_record(emb.name, emb.model_id) == "toy:red"
    reopened = registry.load_embedder(again)
    assert reopened.model_id == emb.model_id
    np.testing.assert_array_equal(reopened.embed_texts(["red", "blue"]), emb.embed_texts(["red", "blue"]))
    other = registry.load_embedder("toy:blue")
    assert other.model_id != emb.model_id and not np.allclose(other.embed_texts(["red"]), emb.embed_texts(["red"]))
    assert not registry.is_cached(spec)
    toy.add("red")
    assert registry.is_cached(spec) and not registry.is_cached(registry.resolve("toy:blue"))
    assert registry.extra_for(spec) == "toy-extra"
    with pytest.raises(ModelError, match="toy: needs a colour"):
        registry.resolve("toy:")
    assert registry.resolve("hf:org/clip").backend == "hf"  # the built-in kinds are still there
    assert registry.resolve("onnx:org/clip").backend == "onnx"


def test_a_library_indexed_with_a_plugin_model_reopens_with_it(toy, tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    make_folder(photos, 3)
    with Library(tmp_path / "lib", model="toy:red") as lib:
        assert lib.index([photos], workers=0).added == 3
        assert lib.recorded_model["name"] == "toy:red" and lib.recorded_model["model_id"] == "toy:red@1"
        want = lib.embedder().embed_texts(["red"])
    for model in (None, "toy:red"):
        with Library(tmp_path / "lib", model=model) as lib:
            emb = lib.embedder()
            assert isinstance(emb, ToyEmbedder) and emb.model_id == "toy:red@1"
            np.testing.assert_array_equal(emb.embed_texts(["red"]), want)
    with Library(tmp_path / "lib", model="toy:blue") as lib, \
            pytest.raises(ModelMismatchError, match="indexed with toy:red, not toy:blue"):
        lib.embedder()
    monkeypatch.setattr(registry, "_registered", {})  # the plugin is gone: the library still says what it holds
    assert registry.name_for_record("toy:red", "toy:red@1") == "toy:red"
    with Library(tmp_path / "lib", model="clip-vit-b-32") as lib, \
            pytest.raises(ModelMismatchError, match="indexed with toy:red, not clip-vit-b-32"):
        lib.embedder()
    with Library(tmp_path / "lib") as lib, pytest.raises(ModelError, match="unknown model 'toy:red'"):
        lib.embedder()


def test_an_installed_plugin_registers_through_an_entry_point(tmp_path, monkeypatch):
    """A package's `picseek.backends` entry point names its Backend (or, as older plugins do, only a loader)."""
    from importlib.metadata import EntryPoint

    (tmp_path / "picseek_toy_plugin.py").write_text(
        "from conftest import ColourEmbedder\n"
        "from picseek.models.base import Backend, ModelSpec\n"
        "def load(spec, device='cpu', precision=None):\n"
        "    emb = ColourEmbedder(spec.name)\n"
        "    emb.model_id = f'toy:{spec.source}@1'\n"
        "    return emb\n"
        "BACKEND = Backend('toy', load, spec=lambda source: ModelSpec(f'toy:{source}', 'toy', source))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    group = registry.ENTRY_POINTS
    points = {"toy": EntryPoint("toy", "picseek_toy_plugin:BACKEND", group),
              "oldtoy": EntryPoint("oldtoy", "picseek_toy_plugin:load", group)}
    monkeypatch.setattr(registry, "_registered", {})
    monkeypatch.setattr(registry, "_imported", {})
    monkeypatch.setattr(registry, "_plugins", lambda: points)
    emb = registry.load_embedder("toy:green")
    assert registry.spec_for_record(emb.name, emb.model_id) == registry.resolve("toy:green")
    assert registry.is_cached(registry.resolve("toy:green")) and registry.extra_for(registry.resolve("toy:x")) is None
    old = registry.load_embedder(ModelSpec("toy:green", "oldtoy", "green"))  # a loader only: it has no names
    assert old.model_id == emb.model_id
    with pytest.raises(ModelError, match="unknown model 'oldtoy:green'"):
        registry.resolve("oldtoy:green")
    with pytest.raises(ModelError, match="needs backend 'gone', which is not installed"):
        registry.load_embedder(ModelSpec("gone:x", "gone", "x"))

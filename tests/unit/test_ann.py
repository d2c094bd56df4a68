"""The approximate index (FAISS IVF) behind searches of large spaces: with the threshold forced low, its hits equal
the exact search's on small sets, the saved index is reused and follows additions and deletions, filters hold."""
import hashlib

import numpy as np
import pytest

from picseek import Library
from picseek.models.base import MAIN, EmbedderBase, ImageSpec, l2_normalize
from picseek.store import ann
from picseek.store.base import ImageRecord

from needs import need_module

need_module("faiss")

DIM = 16
N = 600  # few enough that the index has at most 8 cells and searches all of them: its hits must equal exact's


class HashText(EmbedderBase):
    """Text vectors from a hash of the text (no model needed; these tests are about the vector search)."""

    def __init__(self):
        super().__init__(name="hash-text", model_id="hash-text@1", dim=DIM, image_spec=ImageSpec(),
                         spaces={MAIN: DIM}, image_query_space=MAIN)

    def embed_texts(self, texts):
        seeds = [int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little") for t in texts]
        return l2_normalize(np.stack([np.random.default_rng(s).normal(size=DIM) for s in seeds]).astype(np.float32))


def clustered(n, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, DIM))
    return l2_normalize((centres[rng.integers(0, 12, n)] + 0.4 * rng.normal(size=(n, DIM))).astype(np.float32))


def fill(lib, start, n, seed=0):
    vecs = clustered(n, seed)
    lib.store.write_images([ImageRecord(f"/photos/{'even' if (start + i) % 2 == 0 else 'odd'}/{start + i:05d}.jpg",
                                        1, 1, "h", {"width": 100 + (start + i) % 100}, {MAIN: vecs[i]})
                            for i in range(n)])


@pytest.fixture
def lib(tmp_path, monkeypatch):
    monkeypatch.setenv("PICSEEK_ANN_THRESHOLD", "100")
    ann.forget()
    library = Library(tmp_path / "lib", model=HashText())
    library.store.set_model({"name": "hash-text", "model_id": "hash-text@1", "dim": DIM, "spaces": {MAIN: DIM}})
    fill(library, 0, N)
    yield library
    ann.forget()
    library.close()


QUERIES = ["a red car", "sunset over the sea", "a cat", "people at a party", "mountains", "x"]


def both(lib, query, **kw):
    approx = lib.search(query, limit=10, keywords=False, **kw)
    exact = lib.search(query, limit=10, keywords=False, exact=True, **kw)
    return approx, exact


def same(approx, exact):
    assert [h.id for h in approx] == [h.id for h in exact]
    np.testing.assert_allclose([h.score for h in approx], [h.score for h in exact], atol=1e-5)


def ann_file(lib):
    """The saved index (one per vector table lineage; older ones are removed), or a path that does not exist."""
    found = sorted((lib.path / "cache").glob("ann-main-*.faiss"))
    assert len(found) <= 1, found
    return found[0] if found else lib.path / "cache" / "ann-main-none.faiss"


def test_approximate_hits_equal_exact_ones_and_the_index_is_saved(lib):
    for q in QUERIES:
        same(*both(lib, q))
    assert ann_file(lib).is_file()
    assert ann._indexes  # the approximate path ran


def test_exact_below_the_threshold_and_when_asked(lib, monkeypatch):
    lib.search("a cat", limit=5, keywords=False, exact=True)
    assert not ann_file(lib).exists()
    monkeypatch.setenv("PICSEEK_ANN_THRESHOLD", str(N + 1))
    lib.search("a cat", limit=5, keywords=False)
    assert not ann_file(lib).exists()
    monkeypatch.setenv("PICSEEK_ANN_THRESHOLD", "0")  # 0: never
    lib.search("a cat", limit=5, keywords=False)
    assert not ann_file(lib).exists()


def test_saved_index_is_reused_by_a_new_process(lib, monkeypatch):
    lib.search("a cat", limit=5, keywords=False)
    ann.forget()  # as a new process: nothing in memory

    def no_build(table):
        raise AssertionError("the saved index should have been read, not built again")

    monkeypatch.setattr(ann, "_build", no_build)
    for q in QUERIES:
        same(*both(lib, q))


def test_additions_are_added_and_deletions_removed(lib, monkeypatch):
    lib.search("a cat", limit=5, keywords=False)
    builds = []
    real = ann._build
    monkeypatch.setattr(ann, "_build", lambda table: builds.append(table.rows) or real(table))
    # a new image that is the best match of a query must be found
    q = HashText().embed_texts(["a cat"])[0]
    lib.store.write_images([ImageRecord("/photos/new.jpg", 1, 1, "h", {}, {MAIN: q})])
    fill(lib, N, 40, seed=3)
    approx, exact = both(lib, "a cat")
    same(approx, exact)
    assert approx[0].path == "/photos/new.jpg" and approx[0].score > 0.99
    gone = [h.path for h in approx[:3]]
    lib.store.delete_paths(gone)
    approx, exact = both(lib, "a cat")
    same(approx, exact)
    assert not set(gone) & {h.path for h in approx}
    assert builds == []  # kept in step, not rebuilt
    ann.forget()  # the saved file holds the same rows
    held = ann._ids_of(ann.index_for(lib.path, MAIN, lib.store.vector_table(MAIN)).index)
    np.testing.assert_array_equal(held, lib.store.vector_table(MAIN).seqs)


def test_index_is_trained_again_when_the_space_grew_a_lot(lib, monkeypatch):
    lib.search("a cat", limit=5, keywords=False)
    first = ann._indexes[(str(lib.path), MAIN)]
    fill(lib, N, 9 * N, seed=4)
    same(*both(lib, "a cat"))
    again = ann._indexes[(str(lib.path), MAIN)]
    assert again is not first and again.nlist > first.nlist


@pytest.mark.parametrize("where", [["folder=/photos/even"], ["width>=150"], ["width>=198"],
                                   ["width>=199"]])
def test_filters_hold_and_match_exact(lib, where):
    for q in QUERIES[:3]:
        approx, exact = both(lib, q, where=where)
        same(approx, exact)
        rows = lib.store.get_images([h.id for h in approx])
        if where == ["folder=/photos/even"]:
            assert all("/even/" in r["path"] for r in rows.values())
        else:
            floor = int(where[0].split(">=")[1])
            assert all(r["width"] >= floor for r in rows.values())


def test_keyword_fusion_and_adaptive_cut_match_exact(lib):
    lib.store.set_fields([(7, {"description": "zebra crossing"})])
    approx = lib.search("zebra", limit=80)
    same(approx, lib.search("zebra", limit=80, exact=True))
    assert 7 in [h.id for h in approx]  # a keyword hit far down the vector ranking keeps its exact score
    approx = lib.search("zebra", limit=100, adaptive=0.8, keywords=False)
    same(approx, lib.search("zebra", limit=100, adaptive=0.8, keywords=False, exact=True))
    assert 0 < len(approx) < 100


def test_without_faiss_search_is_exact(lib, monkeypatch, caplog):
    monkeypatch.setattr(ann, "_faiss", None)
    import builtins

    real_import = builtins.__import__

    def no_faiss(name, *a, **k):
        if name == "faiss":
            raise ImportError("no faiss here")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    with caplog.at_level("WARNING", logger="picseek"):
        approx, exact = both(lib, "a cat")
    same(approx, exact)
    assert "faiss is not installed" in caplog.text and not ann_file(lib).exists()


def test_a_damaged_index_file_is_built_again(lib, caplog):
    lib.search("a cat", limit=5, keywords=False)
    ann.forget()
    ann_file(lib).write_bytes(b"not an index")
    with caplog.at_level("WARNING", logger="picseek"):
        same(*both(lib, "a cat"))
    assert "building it again" in caplog.text


def test_cells_and_probes_rules():
    assert ann.cells_for(100) * ann.MIN_TRAIN_PER_CELL <= 100
    assert ann.cells_for(100_000) == 256 and ann.cells_for(1_000_000) == 1024
    assert ann.probes_for(8, 600) == 8  # small: every cell
    assert ann.probes_for(1024, 1_000_000) == 51 and ann.probes_for(256, 100_000) == 126  # ~49k rows looked at


def test_prepare_builds_the_index_of_large_spaces_only(lib):
    lib.store.prepare_search([MAIN], N + 1)
    assert not ann_file(lib).exists()
    lib.store.prepare_search([MAIN], 100)
    assert ann_file(lib).is_file()


def test_status_counts_database_and_caches_per_image(lib):
    from click.testing import CliRunner

    from picseek.cli import cli

    before = lib.status()
    lib.search("a cat", limit=5, keywords=False)  # writes the vector cache and the index
    after = lib.status()
    assert after["images"] == N and after["disk_bytes"] > before["disk_bytes"] + ann_file(lib).stat().st_size
    assert after["bytes_per_image"] == round(after["disk_bytes"] / N)
    out = CliRunner().invoke(cli, ["--library", str(lib.path), "status"]).output
    assert f"{after['bytes_per_image']:,} bytes per image" in out


def test_cli_search_exact_flag(lib, monkeypatch):
    import json

    from click.testing import CliRunner

    from picseek import library as library_module
    from picseek.cli import cli

    lib.close()
    real = library_module.Library
    monkeypatch.setattr(library_module, "Library", lambda path=None, model=None, **kw: real(path, HashText(), **kw))
    args = ["--library", str(lib.path), "search", "a cat", "--json", "--no-keywords", "-n", "5"]
    exact = CliRunner().invoke(cli, args + ["--exact"])
    assert exact.exit_code == 0, exact.output
    assert not ann_file(lib).exists()
    approx = CliRunner().invoke(cli, args)
    assert approx.exit_code == 0 and ann_file(lib).is_file()
    assert [h["id"] for h in json.loads(approx.output)] == [h["id"] for h in json.loads(exact.output)]


def test_a_memory_mapped_index_is_read_again_before_it_changes(lib):
    lib.search("a cat", limit=5, keywords=False)
    ann.forget()
    same(*both(lib, "a cat"))
    key = (str(lib.path), MAIN)
    assert ann._indexes[key].mapped  # opened from its file without reading it
    fill(lib, N, 2, seed=8)  # changing a mapped faiss index would abort the process: it must be read first
    lib.store.delete_paths(["/photos/even/00000.jpg"])
    same(*both(lib, "a cat"))
    assert not ann._indexes[key].mapped
    np.testing.assert_array_equal(ann._indexes[key].seqs, lib.store.vector_table(MAIN).seqs)


def test_a_new_database_in_the_same_folder_never_uses_the_old_index(lib):
    lib.search("a cat", limit=5, keywords=False)  # index saved, and kept in this process
    old = ann_file(lib)
    lib.close()
    for p in lib.path.glob("picseek.db*"):
        p.unlink()  # the cache folder stays: same seqs will name other vectors now
    fresh = Library(lib.path, model=HashText())
    fresh.store.set_model({"name": "hash-text", "model_id": "hash-text@1", "dim": DIM, "spaces": {MAIN: DIM}})
    fill(fresh, 0, N, seed=11)
    for q in QUERIES:
        same(*both(fresh, q))
    assert ann_file(fresh) != old and not old.exists()
    ann.forget()
    same(*both(fresh, "a cat"))
    fresh.close()

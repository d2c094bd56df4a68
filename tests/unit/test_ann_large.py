"""The approximate index of large spaces (issue 20): the PQ kind above ann_pq_threshold (exact re-scoring), kept in
step by index runs as batches land, searches that never build above SEARCH_BUILD_ROWS and score appended rows
exactly, a killed build that leaves the last saved index, recall floors on clustered data, chunked exact scores."""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_ann import DIM, QUERIES, HashText, ann_file, both, fill, same

from picseek import Library
from picseek import library as library_module
from picseek.models.base import MAIN, l2_normalize
from picseek.store import ann, vectorcache
from picseek.store.base import ImageRecord
from picseek.store.nearest import top_indices
from picseek.store.vectorcache import VectorTable

from conftest import ColourEmbedder, make_folder
from needs import need_module

need_module("faiss")

N = 2000  # enough rows to train 5-bit PQ codes; few enough cells that a search probes them all (hits = exact's)


def new_lib(path):
    lib = Library(path, model=HashText())
    lib.store.set_model({"name": "hash-text", "model_id": "hash-text@1", "dim": DIM, "spaces": {MAIN: DIM}})
    return lib


@pytest.fixture
def lib(tmp_path, monkeypatch):
    monkeypatch.setenv("PICSEEK_ANN_THRESHOLD", "100")
    monkeypatch.setenv("PICSEEK_ANN_PQ_THRESHOLD", "1000")
    ann.forget()
    library = new_lib(tmp_path / "lib")
    fill(library, 0, N)
    yield library
    ann.forget()
    library.close()


def held(lib):
    return ann._indexes[(str(lib.path), MAIN)]


def test_pq_index_above_its_threshold_rescored_to_exact_scores(lib, monkeypatch):
    for q in QUERIES:
        same(*both(lib, q))  # every cell probed, candidates re-scored: the same hits and scores as exact
    assert held(lib).kind == "pq"
    import faiss  # as built: no polysemous codes (a build-time cost only a polysemous search would use)
    assert faiss.downcast_index(faiss.extract_index_ivf(held(lib).index)).do_polysemous_training is False
    pq_bytes = ann_file(lib).stat().st_size
    ann.forget()
    index = ann.index_for(lib.path, MAIN, lib.store.vector_table(MAIN))
    assert index.kind == "pq" and index.mapped  # read back memory-mapped as PQ
    monkeypatch.setenv("PICSEEK_ANN_PQ_THRESHOLD", "0")  # 0: never PQ; the saved PQ index is trained again as SQ
    ann.forget()
    for p in ann_file(lib).parent.glob("ann-*"):
        p.unlink()
    lib.store.prepare_search([MAIN], 100)
    assert held(lib).kind == "sq"
    assert pq_bytes * 1.5 < ann_file(lib).stat().st_size  # (16-d: 16 x 5 bits against 32 bytes a vector)


def test_pq_kind_is_kept_down_to_half_its_threshold():
    os.environ["PICSEEK_ANN_PQ_THRESHOLD"] = "1000"
    try:
        assert ann.kind_for(999) == "sq" and ann.kind_for(1000) == "pq"
        assert ann.kind_for(600, "pq") == "pq" and ann.kind_for(400, "pq") == "sq"
        assert ann.pq_shape(512, 200_000) == (64, 8) and ann.pq_shape(16, 2000) == (16, 5)
        assert ann.pq_shape(384, 1000)[0] == 64 and ann.pq_shape(96, 10**6)[0] == 48
    finally:
        del os.environ["PICSEEK_ANN_PQ_THRESHOLD"]


def test_index_runs_step_the_index_as_batches_land(tmp_path, monkeypatch):
    """A run that takes a space past ann_threshold trains the index at the first step past it and then only adds
    rows; the end of the run leaves the saved index holding every row."""
    monkeypatch.setenv("PICSEEK_ANN_THRESHOLD", "20")
    monkeypatch.setattr(library_module, "PREPARE_EVERY", 16)
    ann.forget()
    make_folder(tmp_path / "photos", 64)
    builds, steps = [], []
    real_build = ann._build
    monkeypatch.setattr(ann, "_build", lambda table, kind=None: builds.append(table.rows) or real_build(table, kind))
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    real_prepare = lib.store.prepare_search
    monkeypatch.setattr(lib.store, "prepare_search",
                        lambda spaces, threshold: steps.append(lib.store.count()) or real_prepare(spaces, threshold))
    lib.index([tmp_path / "photos"], workers=1, batch_size=8)
    assert steps[:-1] and steps[-1] == 64  # steps during the run, and the one at its end
    assert len(builds) == 1 and 20 <= builds[0] < 64  # trained once, when the space first passed the threshold
    ann.forget()
    saved = ann._Files(lib.path, MAIN, lib.store.vector_table(MAIN).lineage).read(mapped=True)
    np.testing.assert_array_equal(saved.seqs, lib.store.vector_table(MAIN).seqs)
    lib.close()
    ann.forget()


def test_a_search_never_builds_a_large_index_and_scores_the_tail_exactly(lib, monkeypatch, caplog):
    monkeypatch.setattr(ann, "SEARCH_BUILD_ROWS", 100)
    with caplog.at_level("WARNING", logger="picseek"):
        same(*both(lib, "a cat"))  # no index and too large to build in a search: exact
        same(*both(lib, "a dog"))
    assert caplog.text.count("no approximate index") == 1  # said once, not on every search
    assert not ann_file(lib).exists() and not ann._indexes
    lib.store.prepare_search([MAIN], 100)  # what an index run does
    assert ann_file(lib).is_file()
    ann.forget()  # a search process: the saved index, memory-mapped

    def no_build(*a, **k):
        raise AssertionError("a search must not build the index")

    monkeypatch.setattr(ann, "_build", no_build)
    q = HashText().embed_texts(["a cat"])[0]
    lib.store.write_images([ImageRecord("/photos/new.jpg", 1, 1, "h", {}, {MAIN: q})])
    fill(lib, N, 30, seed=5)  # appended after the saved index: searched exactly as its tail
    approx, exact = both(lib, "a cat")
    same(approx, exact)
    assert approx[0].path == "/photos/new.jpg" and approx[0].score > 0.99
    same(*both(lib, "a cat", where=["folder=/photos/odd"]))  # a filter holds in the tail too
    assert held(lib).mapped and len(held(lib).seqs) == N  # used as saved: not read into memory, nothing added


def test_a_search_uses_an_index_that_wants_training_as_it_is(lib, monkeypatch):
    """Above SEARCH_BUILD_ROWS, a space that grew past the retrain ratio keeps its old cells until a run trains."""
    lib.store.prepare_search([MAIN], 100)
    monkeypatch.setattr(ann, "SEARCH_BUILD_ROWS", 100)
    monkeypatch.setattr(ann, "TAIL_ROWS", 10)
    builds = []
    monkeypatch.setattr(ann, "_build", lambda *a, **k: builds.append(1))
    ann.forget()
    fill(lib, N, 8 * N, seed=6)
    for q in QUERIES[:3]:
        approx, exact = both(lib, q)
        assert len({h.id for h in approx} & {h.id for h in exact}) >= 8
    assert not builds and len(held(lib).seqs) == 9 * N  # rows added (the tail was too long), no training


def test_a_killed_build_leaves_the_last_saved_index(lib, tmp_path):
    """SIGKILL in the middle of adding a step's rows: the file on disk is the previous step's, whole, and a new
    process searches with it (the rows after it as the tail) to the exact hits."""
    lib.store.prepare_search([MAIN], 100)
    saved = ann_file(lib).read_bytes()
    fill(lib, N, 500, seed=9)
    lib.close()
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path[:0] = [{os.path.dirname(__file__)!r}, {os.path.dirname(os.path.dirname(__file__))!r}]
        os.environ["PICSEEK_ANN_THRESHOLD"] = "100"
        os.environ["PICSEEK_ANN_PQ_THRESHOLD"] = "1000"
        from picseek.store import ann
        from test_ann_large import new_lib
        from test_ann import HashText
        real = ann._add_rows
        def add_then_die(index, table, rows, chunk=50_000):
            real(index, table, rows[: len(rows) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        ann._add_rows = add_then_die
        ann.SAVE_FRACTION = 0.0
        new_lib({str(lib.path)!r}).store.prepare_search(["main"], 100)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert ann_file(lib).read_bytes() == saved  # never a half-written index
    assert not [p for p in ann_file(lib).parent.iterdir() if p.name.startswith(".")]  # no temporary file left
    ann.forget()
    again = new_lib(lib.path)
    for q in QUERIES[:3]:
        same(*both(again, q))
    again.store.prepare_search([MAIN], 100)  # the next run brings it in step
    assert len(held(again).seqs) == N + 500
    again.close()


def clustered(n, dim, seed, clusters=64):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.7
    k = rng.choice(clusters, size=n, p=weights / weights.sum())
    return l2_normalize((centres[k] + 0.6 * rng.normal(size=(n, dim))).astype(np.float32)).astype(np.float16)


@pytest.mark.parametrize("kind", ["sq", "pq"])
def test_recall_on_clustered_data_with_few_probes(tmp_path, kind):
    """20k clustered 64-d vectors, 8 of 128 cells probed: recall@10 against exact stays above a floor, and the
    returned scores are the exact ones."""
    n, dim = 20_000, 64
    data = clustered(n, dim, 1)
    table = VectorTable(0, np.arange(1, n + 1, dtype=np.int64), np.arange(1, n + 1, dtype=np.int64), data,
                        lineage="x")
    index = ann._build(table, kind)
    assert index.kind == kind and index.nlist == 128
    queries = l2_normalize(data[np.random.default_rng(2).choice(n, 40)].astype(np.float32)
                           + 0.3 * np.random.default_rng(3).normal(size=(40, dim)).astype(np.float32))
    recall = []
    for q in queries:
        best = top_indices(table.dot(q), 10)
        rows, scores = index.search(table, q, 10, nprobe=8)
        np.testing.assert_allclose(scores, table.dot(q, rows), atol=1e-5)
        recall.append(len(set(best.tolist()) & set(rows.tolist())) / 10)
    assert np.mean(recall) >= 0.9, np.mean(recall)


def test_chunked_exact_scores_equal_the_float32_product(monkeypatch):
    data = clustered(5000, 32, 4)
    monkeypatch.setattr(vectorcache, "F32_MAX", 1000)
    monkeypatch.setattr(vectorcache, "_CHUNK", 777)
    table = VectorTable(0, np.arange(5000), np.arange(5000), data)
    q = l2_normalize(np.ones((1, 32), np.float32))[0]
    full = data.astype(np.float32) @ q
    np.testing.assert_allclose(table.dot(q), full, rtol=1e-6)
    rows = np.array([4999, 3, 17, 2500])
    np.testing.assert_allclose(table.dot(q, rows), full[rows], rtol=1e-6)
    assert table._f32 is None  # no whole float32 copy above F32_MAX


def test_scattered_rows_of_a_mapped_table_are_read_with_pread(lib, monkeypatch):
    """A PQ search's candidates are read with pread (through the map the kernel maps their neighbours too and a
    search process's RSS grows to the whole file); the values equal the map's, and a file that is not the one mapped
    any more is never read."""
    table = lib.store.vector_table(MAIN)
    assert table.path is not None and table.path.is_file()
    rows = np.array([1999, 0, 17, 1024, 17])
    want = np.asarray(table.mat16[rows], dtype=np.float32)
    calls = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda *a: calls.append(a[2]) or real(*a))
    np.testing.assert_array_equal(table.vectors_of_rows(rows), want)
    assert len(calls) == len(rows)
    calls.clear()
    monkeypatch.setattr(table, "inode", (0, 0))  # as if the cache was rebuilt into a new file by that name
    np.testing.assert_array_equal(table.vectors_of_rows(rows), want)
    assert not calls

"""s3:// roots and storage events against a real S3 API: moto's server mode on a loopback port (conftest.s3_endpoint),
read by s3fs exactly as a bucket on AWS is, also by spawned decode workers and CLI subprocesses. Nothing leaves the
machine. Skipped (a failure under PICSEEK_TEST_STRICT) without moto[server] and s3fs: pip install 'picseek[dev]'."""
from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import pytest

from picseek._fs import FileLock
from picseek.errors import IndexBusyError, UsageError
from picseek.library import Library

from cli_helpers import cli_env, run
from conftest import ColourEmbedder, draw_photo, make_folder
from needs import need_module
from ocr_images import text_image

DATA = Path(__file__).parent.parent / "data" / "events"


def jpeg(colour: str, seed: int = 0, shape: str = "square") -> bytes:
    out = io.BytesIO()
    draw_photo(colour, shape, seed=seed).save(out, format="JPEG", quality=90)
    return out.getvalue()


def s3_event(bucket, key: str, etag: str | None = None, name: str = "ObjectCreated:Put",
             encoded_key: str | None = None) -> dict:
    """The S3 notification of the AWS documentation, about `key` of `bucket` (URL-encoded as S3 sends it)."""
    from urllib.parse import quote_plus

    event = json.loads((DATA / "s3_object_created_put.json").read_text())
    record = event["Records"][0]
    record["eventName"] = name
    record["s3"]["bucket"].update(name=bucket.name, arn=f"arn:aws:s3:::{bucket.name}")
    obj = record["s3"]["object"]
    obj["key"] = encoded_key or quote_plus(key, safe="/")
    if etag is None:
        obj.pop("eTag")
    else:
        obj["eTag"] = etag.strip('"')
    return event


def eventbridge_event(bucket, key: str, deleted: bool = False) -> dict:
    event = json.loads((DATA / f"eventbridge_object_{'deleted' if deleted else 'created'}.json").read_text())
    event["detail"]["bucket"]["name"] = bucket.name
    event["detail"]["object"]["key"] = key
    event["detail"]["object"].pop("etag")
    return event


def test_s3_root_indexes_once_then_only_changes_and_searches(s3_bucket, tmp_path):
    for p in make_folder(tmp_path / "src", 4):
        s3_bucket.put(f"photos/{p.name}", p.read_bytes())
    s3_bucket.put("photos/my trip/beach day (1).jpg", jpeg("blue", 7))
    s3_bucket.put("photos/notes.txt", b"not an image")
    s3_bucket.put("photos/.hidden.jpg", jpeg("red"))
    s3_bucket.put("photos/broken.jpg", b"this is text, not a JPEG")
    s3_bucket.put("elsewhere/other.jpg", jpeg("red"))
    root = s3_bucket.url("photos/")
    lib = Library(tmp_path / "lib", model=ColourEmbedder())

    first = lib.index([root], workers=1)  # a spawned decode worker reads the objects from the S3 server
    assert (first.added, first.errors, first.removed) == (5, 1, 0)
    paths = {h.path for h in lib.search("red", limit=50)}
    assert paths == {s3_bucket.url(f"photos/img_{i:03d}.jpg") for i in range(4)} | {
        s3_bucket.url("photos/my trip/beach day (1).jpg")}
    [error] = lib.errors()
    assert error["path"] == s3_bucket.url("photos/broken.jpg")
    assert lib.store.roots() == [s3_bucket.url("photos")]

    again = lib.index([root], workers=1)
    assert (again.embedded, again.unchanged, again.skipped_known_errors, again.removed) == (0, 5, 1, 0)

    s3_bucket.put("photos/img_001.jpg", jpeg("red", 99))  # was green: a new ETag
    s3_bucket.rm("photos/img_002.jpg")
    s3_bucket.put("photos/new/img_new.jpg", jpeg("yellow", 5))
    third = lib.index([root], workers=0)
    assert (third.added, third.updated, third.removed, third.unchanged) == (1, 1, 1, 3)
    assert s3_bucket.url("photos/img_002.jpg") not in {h.path for h in lib.search("red", limit=50)}
    assert s3_bucket.url("photos/img_001.jpg") in {h.path for h in lib.search("red", limit=2)}
    assert lib.search("yellow", limit=1)[0].path == s3_bucket.url("photos/new/img_new.jpg")
    assert lib.search("red", where=["folder=my trip"], limit=5)[0].path.endswith("beach day (1).jpg")

    s3_bucket.rm("photos/img_000.jpg")
    s3_bucket.put("photos/moved/img_000.jpg", (tmp_path / "src" / "img_000.jpg").read_bytes())
    moved = lib.index([root], workers=0)
    assert (moved.moved, moved.embedded, moved.removed) == (1, 0, 0)  # same size and content: followed


def test_s3_missing_bucket_empty_prefix_and_removed_objects(s3_bucket, tmp_path):
    s3_bucket.put("photos/a.jpg", jpeg("red"))
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    with pytest.raises(UsageError, match=r"not found: s3://no-such-bucket-picseek"):
        lib.index(["s3://no-such-bucket-picseek/photos"], workers=0)
    with pytest.raises(UsageError, match="nothing found at"):
        lib.index([s3_bucket.url("empty/")], workers=0)
    assert lib.index([s3_bucket.url("photos")], workers=0).added == 1
    s3_bucket.rm("photos/a.jpg")
    with pytest.raises(UsageError, match="nothing found at"):  # an emptied prefix is not "everything was deleted"
        lib.index([s3_bucket.url("photos")], workers=0)
    assert lib.status()["images"] == 1
    assert lib.remove([s3_bucket.url("photos/")]) == 1


def test_events_follow_uploads_overwrites_and_deletes(s3_bucket, tmp_path):
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    info = s3_bucket.put("photos/a.jpg", jpeg("red"))

    first = lib.handle_event(s3_event(s3_bucket, "photos/a.jpg", info["ETag"]))
    assert (first["action"], first["url"], first["event"]) == ("indexed", s3_bucket.url("photos/a.jpg"), "created")
    image_id = first["id"]
    assert lib.search("red", limit=1)[0].id == image_id
    again = lib.handle_event(s3_event(s3_bucket, "photos/a.jpg", info["ETag"]))  # a duplicate delivery
    assert (again["action"], again["id"]) == ("unchanged", image_id)

    newer = s3_bucket.put("photos/a.jpg", jpeg("blue", 3))
    late = lib.handle_event(s3_event(s3_bucket, "photos/a.jpg", info["ETag"]))  # the first upload's event, late
    assert late["action"] == "ignored" and late["reason"].startswith("stale")
    assert lib.search("red", limit=1)[0].id == image_id and lib.search("blue", limit=1)[0].id == image_id
    assert lib.store.file_states([first["url"]])[first["url"]].size == info["size"]  # still the first version
    updated = lib.handle_event(s3_event(s3_bucket, "photos/a.jpg", newer["ETag"]))
    assert (updated["action"], updated["id"]) == ("updated", image_id)

    s3_bucket.put("photos/2024/Summer trip (1).jpg", jpeg("green", 4))
    spaced = lib.handle_event(s3_event(s3_bucket, "x", encoded_key="photos/2024/Summer+trip+%281%29.jpg"))
    assert spaced["action"] == "indexed" and spaced["url"] == s3_bucket.url("photos/2024/Summer trip (1).jpg")
    s3_bucket.put("photos/eb/cat 1.jpg", jpeg("yellow", 5))
    bridged = lib.handle_event(eventbridge_event(s3_bucket, "photos/eb/cat+1.jpg"))  # an encoded key: tried too
    assert bridged["action"] == "indexed" and bridged["url"] == s3_bucket.url("photos/eb/cat 1.jpg")

    kept = lib.handle_event(s3_event(s3_bucket, "photos/a.jpg", name="ObjectRemoved:Delete"))
    assert kept["action"] == "ignored" and "exists" in kept["reason"]  # written again after the delete
    s3_bucket.rm("photos/a.jpg")
    removed = lib.handle_event(s3_event(s3_bucket, "photos/a.jpg", name="ObjectRemoved:Delete"))
    assert (removed["action"], removed["id"]) == ("removed", image_id)
    assert lib.handle_event(s3_event(s3_bucket, "photos/a.jpg", name="ObjectRemoved:Delete"))["action"] == "unchanged"
    gone = lib.handle_event(s3_event(s3_bucket, "photos/a.jpg", newer["ETag"]))  # its upload's event, after both
    assert gone["action"] == "ignored" and "gone" in gone["reason"]
    s3_bucket.rm("photos/eb/cat 1.jpg")
    assert lib.handle_event(eventbridge_event(s3_bucket, "photos/eb/cat+1.jpg", deleted=True))["action"] == "removed"

    s3_bucket.put("photos/readme.txt", b"words")
    skipped = lib.handle_event(s3_event(s3_bucket, "photos/readme.txt"))
    assert skipped["action"] == "skipped" and "not an image" in skipped["reason"]
    s3_bucket.put("photos/broken.jpg", b"not a JPEG at all")
    broken = lib.handle_event(s3_event(s3_bucket, "photos/broken.jpg"))
    assert broken["action"] == "failed" and broken["id"] is None
    assert [e["path"] for e in lib.errors()] == [s3_bucket.url("photos/broken.jpg")]
    assert "recorded before" in lib.handle_event(s3_event(s3_bucket, "photos/broken.jpg"))["reason"]
    s3_bucket.put("other/b.jpg", jpeg("red"))
    outside = lib.handle_event(s3_event(s3_bucket, "other/b.jpg"), roots=[s3_bucket.url("photos/")])
    assert outside["action"] == "skipped" and "outside" in outside["reason"]

    assert {h.path for h in lib.search("green", limit=10)} == {s3_bucket.url("photos/2024/Summer trip (1).jpg")}
    rescan = lib.index([s3_bucket.url("photos")], workers=0)  # events and a scan agree on every object's state
    assert (rescan.embedded, rescan.unchanged, rescan.removed, rescan.skipped_known_errors) == (0, 1, 0, 1)


def test_events_read_the_words_in_a_library_that_reads_text(s3_bucket, tmp_path):
    """A library with OCR on (issue 19) reads the words in an object an event brings, as an index run would."""
    need_module("rapidocr_onnxruntime")
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    folder = tmp_path / "local"
    make_folder(folder, 1)
    lib.index([folder], workers=0, ocr=True)  # (the library's setting: on)
    buf = io.BytesIO()
    text_image(["Invoice number 7731", "Pay within thirty days"], size=(640, 220)).save(buf, "PNG")
    s3_bucket.put("docs/invoice.png", buf.getvalue())
    answer = lib.handle_event(s3_event(s3_bucket, "docs/invoice.png"))
    assert answer["action"] == "indexed"
    assert "7731" in lib.store.get_texts([answer["id"]])[answer["id"]].text
    assert lib.search('text:"invoice"', limit=1)[0].id == answer["id"]


def test_events_wait_for_a_busy_library_and_never_corrupt_it(s3_bucket, tmp_path):
    keys = [f"photos/p{i}.jpg" for i in range(6)]
    for i, key in enumerate(keys):
        s3_bucket.put(key, jpeg(["red", "green", "blue"][i % 3], i))
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    lib.handle_event(s3_event(s3_bucket, keys[0]))  # (the model is recorded)

    holder = FileLock(tmp_path / "lib" / "index.lock")
    holder.acquire()
    try:
        with pytest.raises(IndexBusyError):
            lib.handle_event(s3_event(s3_bucket, keys[1]), wait=0)
        threading.Timer(0.3, holder.release).start()
        assert lib.handle_event(s3_event(s3_bucket, keys[1]), wait=10)["action"] == "indexed"
    finally:
        holder.release()

    answers: list[dict] = []
    errors: list[BaseException] = []

    def deliver(key: str) -> None:
        try:
            other = Library(tmp_path / "lib", model=ColourEmbedder())  # as another process: its own connection
            answers.append(other.handle_event(s3_event(s3_bucket, key), wait=30))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(k,)) for k in keys[2:] + keys[2:]]  # each twice, at once
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(a["action"] for a in answers) == ["indexed"] * 4 + ["unchanged"] * 4
    assert lib.status()["images"] == 6
    assert len({a["id"] for a in answers}) == 4


@pytest.mark.slow
def test_cli_index_and_events_against_s3(s3_bucket, tmp_path):
    for p in make_folder(tmp_path / "src", 3):
        s3_bucket.put(f"photos/{p.name}", p.read_bytes())
    # the session's cache: the built-in model's caches, made once (~50 s on a busy machine), shared with other tests
    env = dict(cli_env(tmp_path), PICSEEK_CACHE_DIR=os.environ["PICSEEK_CACHE_DIR"])
    lib = tmp_path / "lib"
    out = run("-L", lib, "index", s3_bucket.url("photos"), "--model", "builtin", "--workers", "1", "--json", env=env)
    assert json.loads(out.stdout)["added"] == 3

    # the endpoint as a storage option instead of AWS_ENDPOINT_URL (e.g. MinIO next to the indexer)
    bare = {k: v for k, v in env.items() if k != "AWS_ENDPOINT_URL"}
    s3_bucket.put("photos/img_new.jpg", jpeg("purple", 8))
    out = run("-L", lib, "index", s3_bucket.url("photos"), "--storage-option", f"endpoint_url={s3_bucket.endpoint}",
              "--workers", "1", "--json", env=bare)
    assert (json.loads(out.stdout)["added"], json.loads(out.stdout)["unchanged"]) == (1, 3)

    s3_bucket.put("photos/upload.jpg", jpeg("orange", 9))
    event = tmp_path / "event.json"
    event.write_text(json.dumps(s3_event(s3_bucket, "photos/upload.jpg")))
    fsspec_env = dict(bare, FSSPEC_S3_ENDPOINT_URL=s3_bucket.endpoint)  # fsspec's own configuration variable
    added = json.loads(run("-L", lib, "event", event, env=fsspec_env).stdout)
    assert added["action"] == "indexed" and added["url"] == s3_bucket.url("photos/upload.jpg")
    s3_bucket.rm("photos/upload.jpg")
    stdin = json.dumps(s3_event(s3_bucket, "photos/upload.jpg", name="ObjectRemoved:Delete"))
    proc = run("-L", lib, "event", "-", env=env, check=False, input_text=stdin)
    assert proc.returncode == 0 and json.loads(proc.stdout) == {**added, "action": "removed", "event": "deleted"}

    bad = run("-L", lib, "event", "-", env=env, check=False, input_text='{"hello": 1}')
    assert bad.returncode == 2 and json.loads(bad.stdout)["code"] == "bad_event"
    assert bad.stderr.startswith("picseek: error: not a storage event") and bad.stderr.count("\n") == 1
    with FileLock(lib / "index.lock"):
        busy = run("-L", lib, "event", event, "--wait", "0", env=env, check=False)
    assert busy.returncode == 3 and json.loads(busy.stdout) == {
        "action": "error", "error": f"another index run is using {lib}; wait for it to finish", "code": "busy",
        "retry": True}
    assert "Traceback" not in busy.stderr + bad.stderr


def test_event_receiver_over_http(s3_bucket, tmp_path):
    from needs import need_module

    need_module("fastapi")
    from fastapi.testclient import TestClient

    from picseek.server.events import create_events_app

    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    s3_bucket.put("photos/a.jpg", jpeg("red"))
    app = create_events_app(lib, token="s3cret-token", roots=(s3_bucket.url("photos"),), wait=0)
    auth = {"Authorization": "Bearer s3cret-token"}
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"ok": True}
        refused = client.post("/events", json=s3_event(s3_bucket, "photos/a.jpg"))
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
        ok = client.post("/", json=s3_event(s3_bucket, "photos/a.jpg"), headers=auth)
        assert ok.status_code == 200 and ok.json()["action"] == "indexed"
        bad = client.post("/events", content=b"{oops", headers=auth)
        assert bad.status_code == 400 and bad.json()["code"] == "bad_event" and bad.json()["retry"] is False
        with FileLock(tmp_path / "lib" / "index.lock"):
            s3_bucket.put("photos/b.jpg", jpeg("blue"))
            busy = client.post("/events", json=s3_event(s3_bucket, "photos/b.jpg"), headers=auth)
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "5" and busy.json()["retry"] is True
        redelivered = client.post("/events", json=s3_event(s3_bucket, "photos/b.jpg"), headers=auth)
        assert redelivered.json()["action"] == "indexed"
        gcs = json.loads((DATA / "gcs_deleted_binary.json").read_text())
        binary = client.post("/events", content=json.dumps(gcs["body"]), headers={**auth, **gcs["headers"]})
        assert binary.status_code == 200 and binary.json()["action"] == "skipped"  # (not below the roots)
        big = client.post("/events", content=b" " * 1_000_001, headers=auth)
        assert big.status_code == 413
    assert lib.status()["images"] == 2


def test_server_serves_originals_of_s3_images(s3_bucket, tmp_path):
    from needs import need_module

    need_module("fastapi")
    from fastapi.testclient import TestClient

    from picseek.server import ServerSettings, create_app

    data = jpeg("green", 2)
    s3_bucket.put("photos/g.jpg", data)
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    lib.index([s3_bucket.url("photos")], workers=0)
    [hit] = lib.search("green", limit=1)
    with TestClient(create_app(lib, ServerSettings(index_on_start=False)), base_url="http://127.0.0.1") as client:
        original = client.get(f"/api/images/{hit.id}")
        assert original.status_code == 200 and original.content == data
        assert client.get(f"/api/images/{hit.id}/thumbnail?size=160").status_code == 200


def test_events_on_a_chroma_store(s3_bucket, tmp_path):
    """The same events on ChromaDB as the store (embedded here; a server is the same ChromaStore over HTTP): the
    library folder holds only the index lock."""
    from needs import need_module

    need_module("chromadb")
    store = f"chroma://{tmp_path}/chroma-db?collection=events"
    lib = Library(tmp_path / "lib", model=ColourEmbedder(), store=store)
    s3_bucket.put("photos/a.jpg", jpeg("red"))
    s3_bucket.put("photos/b.jpg", b"broken")
    added = lib.handle_event(s3_event(s3_bucket, "photos/a.jpg"))
    assert added["action"] == "indexed"
    assert lib.handle_event(s3_event(s3_bucket, "photos/a.jpg"))["action"] == "unchanged"
    assert lib.handle_event(s3_event(s3_bucket, "photos/b.jpg"))["action"] == "failed"
    assert "recorded before" in lib.handle_event(s3_event(s3_bucket, "photos/b.jpg"))["reason"]
    reader = Library(tmp_path / "reader", model=ColourEmbedder(), store=store)  # a search container elsewhere
    assert [h.path for h in reader.search("red", limit=5)] == [s3_bucket.url("photos/a.jpg")]
    s3_bucket.rm("photos/a.jpg")
    removed = lib.handle_event(s3_event(s3_bucket, "photos/a.jpg", name="ObjectRemoved:Delete"))
    assert (removed["action"], removed["id"]) == ("removed", added["id"])
    assert reader.status()["images"] == 0 and sorted(p.name for p in (tmp_path / "lib").iterdir()) == ["index.lock"]


def test_event_receiver_applies_concurrent_deliveries_one_at_a_time(s3_bucket, tmp_path):
    """The receiver served by uvicorn, with deliveries arriving at once (each object twice): each is applied under the
    library's lock, none is lost or doubled."""
    from needs import need_module

    need_module("fastapi")
    httpx = need_module("httpx")
    from concurrent.futures import ThreadPoolExecutor

    from picseek.server.events import create_events_app
    from picseek.server.run import running

    keys = [f"photos/c{i}.jpg" for i in range(4)]
    for i, key in enumerate(keys):
        s3_bucket.put(key, jpeg(["red", "green", "blue", "yellow"][i], i))
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    lib.handle_event(s3_event(s3_bucket, keys[0]))  # (records the model: the rest only embeds)
    with running(create_events_app(lib, wait=30)) as base, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda key: httpx.post(f"{base}/events", json=s3_event(s3_bucket, key), timeout=60),
                                keys[1:] * 2))
    assert [a.status_code for a in answers] == [200] * 6
    assert sorted(a.json()["action"] for a in answers) == ["indexed"] * 3 + ["unchanged"] * 3
    assert lib.status()["images"] == 4 and lib.errors() == []


def test_cli_event_refuses_bad_input_with_one_line(tmp_path):
    env = cli_env(tmp_path)
    cases = [
        (["event", tmp_path / "nope.json"], 2, "cannot read the event file"),
        (["event", DATA / "s3_test_event.json", "--header", "ce-type"], 2, "bad header 'ce-type': use NAME:VALUE"),
        (["event", DATA / "s3_test_event.json", "--no-token"], 2, "--no-token goes with --serve"),
        (["event", "--serve", "--host", "0.0.0.0", "--port", "0"], 2, "set PICSEEK_TOKEN"),
    ]
    for args, status, message in cases:
        proc = run("-L", tmp_path / "lib", *args, env={k: v for k, v in env.items() if k != "PICSEEK_TOKEN"},
                   check=False, timeout=60)
        assert proc.returncode == status and message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    skipped = run("-L", tmp_path / "lib", "event", DATA / "s3_test_event.json", env=env)
    assert json.loads(skipped.stdout)["action"] == "skipped"

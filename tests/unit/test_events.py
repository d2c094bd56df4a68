"""Storage events read into the objects they are about (ingest/events.parse_event), from the payloads the platforms
document (tests/data/events), and the answers for errors. Applying events to a library: tests/integration/test_s3.py
(a local S3 server) and the fake-storage tests below."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from picseek.errors import IndexBusyError, LibraryIOError, StorageError, UsageError
from picseek.ingest import events
from picseek.ingest.events import CREATED, DELETED, ObjectEvent, parse_event

DATA = Path(__file__).parent.parent / "data" / "events"


def sample(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def test_s3_notifications_created_and_removed_with_url_encoded_keys():
    [created] = parse_event(sample("s3_object_created_put.json"))
    assert created == ObjectEvent(CREATED, "s3://amzn-s3-demo-bucket/HappyFace.jpg",
                                  "d41d8cd98f00b204e9800998ecf8427e", "s3")
    [removed] = parse_event(json.dumps(sample("s3_object_removed_delete.json")))  # (text works too)
    assert removed.kind == DELETED and removed.version is None
    assert removed.url == "s3://amzn-s3-demo-bucket/photos/2024/Summer trip (1).jpg"  # '+' is a space, %28 a '('
    plus = sample("s3_object_created_put.json")
    plus["Records"][0]["s3"]["object"]["key"] = "a%2Bb+c.jpg"
    assert parse_event(plus)[0].url == "s3://amzn-s3-demo-bucket/a+b c.jpg"


def test_s3_inside_sqs_and_sns_and_several_records():
    [multipart] = parse_event(sample("sqs_lambda_s3.json"))
    assert (multipart.kind, multipart.url) == (CREATED, "s3://amzn-s3-demo-bucket/uploads/IMG_0001.JPG")
    assert multipart.version == "4b2ec6a43a5f5d1fc53d4bd6e3ed8e09-1"
    note = sample("s3_object_created_put.json")
    sns = {"Type": "Notification", "MessageId": "1", "TopicArn": "arn:aws:sns:us-east-1:1:t",
           "Message": json.dumps(note)}
    assert parse_event(sns)[0].url == "s3://amzn-s3-demo-bucket/HappyFace.jpg"
    lambda_sns = {"Records": [{"EventSource": "aws:sns", "Sns": sns}]}
    assert parse_event(lambda_sns)[0].kind == CREATED
    two = copy.deepcopy(note)
    two["Records"].append(sample("s3_object_removed_delete.json")["Records"][0])
    assert [e.kind for e in parse_event(two)] == [CREATED, DELETED]
    confirm = parse_event({"Type": "SubscriptionConfirmation", "SubscribeURL": "https://sns.example/confirm"})
    assert confirm[0].kind is None and "SubscribeURL" in confirm[0].note


def test_eventbridge_created_and_deleted():
    created = sample("eventbridge_object_created.json")
    created["detail"]["object"]["key"] = "photos/cat.jpg"
    [event] = parse_event(created)
    assert event == ObjectEvent(CREATED, "s3://amzn-s3-demo-bucket1/photos/cat.jpg",
                                "b1946ac92492d2347c6235b4d2611184", "eventbridge")
    deleted = sample("eventbridge_object_deleted.json")
    deleted["detail"]["object"]["key"] = "photos/my+cat.jpg"
    [gone] = parse_event(deleted)
    assert gone.kind == DELETED and gone.url == "s3://amzn-s3-demo-bucket1/photos/my+cat.jpg"
    assert gone.alternatives == ("s3://amzn-s3-demo-bucket1/photos/my cat.jpg",)  # tried if the first names nothing
    other = dict(created, **{"detail-type": "Object Tags Added"})
    assert parse_event(other)[0].kind is None


def test_gcs_cloudevents_structured_binary_and_pubsub():
    [final] = parse_event(sample("gcs_finalized_cloudevent.json"))
    assert final == ObjectEvent(CREATED, "gs://my-bucket/my-file.jpg", "1601378830218000", "gcs")
    binary = sample("gcs_deleted_binary.json")
    [deleted] = parse_event(json.dumps(binary["body"]).encode(), binary["headers"])
    assert (deleted.kind, deleted.url, deleted.version) == (DELETED, "gs://my-bucket/albums/2024/beach day.jpg",
                                                           "1717233245331829")
    headers = {k.upper(): v for k, v in binary["headers"].items()}  # header names in any case
    assert parse_event(json.dumps(binary["body"]), headers)[0].kind == DELETED
    archived = dict(binary["headers"], **{"ce-type": "google.cloud.storage.object.v1.archived"})
    assert parse_event(binary["body"], archived)[0].kind == DELETED  # the object's current state decides
    meta = dict(binary["headers"], **{"ce-type": "google.cloud.storage.object.v1.metadataUpdated"})
    assert parse_event(binary["body"], meta)[0].kind is None
    [pushed] = parse_event(sample("pubsub_push_gcs.json"))
    assert (pushed.kind, pushed.url, pushed.version) == (CREATED, "gs://my-bucket/albums/2024/beach day.jpg",
                                                         "1717233245331829")


def test_non_images_folders_hidden_and_test_events_are_skipped_with_a_reason():
    assert parse_event(sample("s3_test_event.json"))[0].note.startswith("S3's test event")
    for key, why in (("notes.txt", "not an image"), ("photos/", "folder marker"), ("photos/.hidden.jpg", "hidden"),
                     ("raw/IMG.CR2", "not an image")):
        note = sample("s3_object_created_put.json")
        note["Records"][0]["s3"]["object"]["key"] = key
        [event] = parse_event(note)
        assert event.kind is None and why in event.note, key


@pytest.mark.parametrize("body, headers, message", [
    (b"{not json", None, "not JSON"),
    ([1, 2], None, "expected a JSON object"),
    ({"hello": "world"}, None, "not a storage event picseek knows"),
    ({"Records": []}, None, "no records"),
    ({"Records": [{"eventSource": "aws:dynamodb"}]}, None, "aws:dynamodb"),
    ({"specversion": "1.0", "type": "com.example.other"}, None, "CloudEvent of type"),
    ({"name": "a.jpg"}, {"ce-type": "google.cloud.storage.object.v1.finalized"}, "without a bucket"),
    ({"detail-type": "Object Created", "source": "aws.ec2"}, None, "aws.ec2"),
])
def test_malformed_events_are_one_line_usage_errors(body, headers, message):
    with pytest.raises(UsageError, match=message) as err:
        parse_event(body, headers)
    assert "\n" not in str(err.value)
    answer = events.error_answer(err.value)
    assert answer["code"] == "bad_event" and answer["retry"] is False


def test_error_answers_say_whether_to_deliver_again():
    assert events.error_answer(IndexBusyError("busy")) == {"action": "error", "error": "busy", "code": "busy",
                                                            "retry": True}
    assert events.error_answer(StorageError("cannot read"))["retry"] is True
    assert events.error_answer(LibraryIOError("disk full"))["code"] == "library_unavailable"


def test_gcs_events_follow_generations(tmp_path, monkeypatch):
    """Cloud Storage events applied to a library, with the bucket faked where picseek reads it (an object's current
    metadata, its bytes): generations decide what is stale, what to retry and what to remove."""
    from picseek.ingest import images, remote
    from picseek.library import Library

    from conftest import ColourEmbedder, make_folder

    photos = make_folder(tmp_path / "src", 3)
    bucket: dict[str, tuple[Path, str]] = {}  # url -> (the object's bytes in a local file, generation)
    real_decode = images.decode_file
    monkeypatch.setattr(remote, "object_info", lambda url: None if url not in bucket else {
        "name": url, "size": bucket[url][0].stat().st_size, "generation": bucket[url][1], "type": "file"})
    monkeypatch.setattr(images, "decode_file", lambda url, spec, **kw: real_decode(str(bucket[url][0]), spec, **kw))
    lib = Library(tmp_path / "lib", model=ColourEmbedder())
    url = "gs://my-bucket/my-file.jpg"
    final = sample("gcs_finalized_cloudevent.json")

    bucket[url] = (photos[0], "1601378830218000")
    first = lib.handle_event(final)
    assert (first["action"], first["url"]) == ("indexed", url) and lib.recorded_model["name"] == "test-colour"
    assert lib.handle_event(final) == {**first, "action": "unchanged"}
    bucket[url] = (photos[1], "1601378830218001")  # overwritten
    stale = lib.handle_event(final)
    assert stale["action"] == "ignored" and "1601378830218000" in stale["reason"]
    ahead = copy.deepcopy(final)
    ahead["data"]["generation"] = "1601378830218002"  # an event about a generation the bucket does not show yet
    with pytest.raises(StorageError, match="not readable yet"):
        lib.handle_event(ahead)
    current = copy.deepcopy(final)
    current["data"]["generation"] = "1601378830218001"
    assert lib.handle_event(current) == {**first, "action": "updated"}

    beach = "gs://my-bucket/albums/2024/beach day.jpg"
    bucket[beach] = (photos[2], "1717233245331829")
    pushed = lib.handle_event(sample("pubsub_push_gcs.json"))
    assert (pushed["action"], pushed["url"]) == ("indexed", beach)
    binary = sample("gcs_deleted_binary.json")
    archived = dict(binary["headers"], **{"ce-type": "google.cloud.storage.object.v1.archived"})
    bucket[beach] = (photos[0], "1717233245331900")  # a newer live generation: the old one was archived
    assert lib.handle_event(json.dumps(binary["body"]), archived)["action"] == "ignored"
    del bucket[beach]
    removed = lib.handle_event(json.dumps(binary["body"]), binary["headers"])
    assert (removed["action"], removed["id"]) == ("removed", pushed["id"])
    assert lib.status()["images"] == 1

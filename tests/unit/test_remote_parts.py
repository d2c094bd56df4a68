"""The pieces of ingest/remote.py that need no server: change markers from each backend's listing fields, error
translation, storage options, canonical URLs, and which listed objects count as images."""
from __future__ import annotations

import datetime as dt

import pytest

from picseek.errors import StorageError, UsageError
from picseek.ingest import remote

S3_ENTRY = {"Key": "bucket/a.jpg", "size": 10, "type": "file", "ETag": '"9b2cf535f27731c974343645a3985328"',
            "LastModified": dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)}
GCS_ENTRY = {"name": "bucket/a.jpg", "size": 10, "type": "file", "generation": "1714564800123456",
             "etag": "CMDY3Mfr9IUDEAE=", "updated": "2024-05-01T12:00:00.123Z"}
HTTP_ENTRY = {"name": "http://h/a.jpg", "size": 10, "type": "file", "Last-Modified": "Wed, 01 May 2024 12:00:00 GMT"}


def test_version_keys_win_over_times_and_a_new_version_changes_the_marker():
    s3 = remote.change_marker(S3_ENTRY)
    assert s3 == remote.change_marker(dict(S3_ENTRY, LastModified=dt.datetime(2025, 1, 1)))  # ETag decides
    assert s3 != remote.change_marker(dict(S3_ENTRY, ETag='"other"'))
    gcs = remote.change_marker(GCS_ENTRY)
    assert gcs != remote.change_marker(dict(GCS_ENTRY, generation="1714564800999999"))
    assert gcs == remote.change_marker(dict(GCS_ENTRY, etag="metadata-changed"))  # generation before etag
    for marker in (s3, gcs):
        assert 0 < marker < 2**63


def test_times_are_nanoseconds_whatever_their_form():
    ns = 1714564800 * 10**9
    assert remote.change_marker(HTTP_ENTRY) == ns
    assert remote.change_marker({"updated": "2024-05-01T12:00:00Z"}) == ns
    assert remote.change_marker({"LastModified": dt.datetime(2024, 5, 1, 12)}) == ns  # naive: UTC
    assert remote.change_marker({"mtime": 1714564800.5}) == ns + 500_000_000
    assert remote.change_marker({"size": 3}) == 0
    assert remote.change_marker({"Last-Modified": "garbage"}) == 0


def test_backend_errors_become_one_line():
    url = "s3://bucket/photos"
    assert isinstance(remote.translate(FileNotFoundError("NoSuchBucket"), url, "list"), UsageError)
    denied = remote.translate(PermissionError("AccessDenied"), url, "list")
    assert isinstance(denied, StorageError) and "AWS_ACCESS_KEY_ID" in str(denied)

    class NoCredentialsError(Exception):
        pass

    creds = remote.translate(NoCredentialsError("Unable to locate credentials"), "gs://b/x", "list")
    assert isinstance(creds, StorageError) and "GOOGLE_APPLICATION_CREDENTIALS" in str(creds)

    class ClientResponseError(Exception):
        status = 403

    assert "access denied" in str(remote.translate(ClientResponseError("Forbidden"), "https://h/x", "list"))
    other = remote.translate(ValueError("boom\nsecond line"), url, "list")
    assert str(other) == "cannot list s3://bucket/photos: ValueError: boom second line"


def test_storage_options_parse_json_values():
    assert remote.parse_storage_options(["anon=true", "endpoint_url=http://minio:9000", "n=3", 'h={"a": 1}']) == \
        {"anon": True, "endpoint_url": "http://minio:9000", "n": 3, "h": {"a": 1}}
    with pytest.raises(UsageError, match="KEY=VALUE"):
        remote.parse_storage_options(["anon"])


def test_canonical_urls_and_store_paths():
    assert remote.canonical_url("https://h/photos/") == "https://h/photos"
    assert remote.canonical_url("memory://x/") == "memory:///x"
    assert remote.store_path("file:///tmp/a%20b") == "/tmp/a b"
    assert remote.is_remote("s3://b/k") and not remote.is_remote("file:///x") and not remote.is_remote("/x")
    with pytest.raises(UsageError, match="names host"):
        remote.store_path("file://server/share")


@pytest.mark.parametrize("url, wanted", [
    ("https://h/p/a.jpg", True), ("https://h/p/sub/b%20c.PNG", True), ("https://h/p/.hidden.jpg", False),
    ("https://h/p/.cache/a.jpg", False), ("https://h/p/notes.txt", False), ("https://h/p/a.jpg?raw=1", True),
    ("https://h/p/", False),
])
def test_which_listed_objects_are_images(url, wanted):
    assert remote._is_image(url, "https://h/p") is wanted

"""Storage events: one object was written to or deleted from a bucket, and the library follows that one object.

`parse_event` reads what the cloud platforms deliver into `ObjectEvent`s (created or deleted, the object's URL as a
scan of its bucket spells it, the version the event is about):

- CloudEvents of Google Cloud Storage (`google.cloud.storage.object.v1.finalized`, `.deleted`, `.archived`; what
  Eventarc sends a Cloud Run service), in structured mode (one JSON document) or binary mode (`ce-*` HTTP headers,
  the object's JSON as the body); also Cloud Storage's Pub/Sub notifications (`OBJECT_FINALIZE`, `OBJECT_DELETE`)
  as a Pub/Sub push subscription delivers them;
- S3 event notifications (`Records[]`, `eventName` `ObjectCreated:*` / `ObjectRemoved:*`; keys URL-encoded), also
  wrapped by SQS (a Lambda's SQS records, a message body) or SNS;
- EventBridge events of S3 (`Object Created`, `Object Deleted`).

`apply` then brings the store in step with that one object, reading its current state from storage (the event is a
trigger, the bucket the truth): a duplicate delivery changes nothing, an event about a version that has since been
replaced or deleted is ignored, a deleted object leaves the index only once it is really gone. Anything else a
platform sends (S3's test event, metadata updates) is skipped with the reason. Concurrency is the caller's:
`Library.handle_event` holds the index-run lock around `apply`.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote_plus

from ..errors import IndexBusyError, LibraryIOError, ModelError, PicseekError, StorageError, UsageError
from ..paths import within
from .paths import FileEntry, canonical_url, has_image_extension

__all__ = ["ObjectEvent", "parse_event", "apply", "answer", "error_answer", "CREATED", "DELETED"]

log = logging.getLogger(__name__)
CREATED, DELETED = "created", "deleted"

_GCS_TYPES = {"google.cloud.storage.object.v1.finalized": CREATED, "google.cloud.storage.object.v1.deleted": DELETED,
              # a versioned bucket: the live version became noncurrent (overwritten or deleted); the object's
              # current state decides
              "google.cloud.storage.object.v1.archived": DELETED}
_GCS_PUBSUB = {"OBJECT_FINALIZE": CREATED, "OBJECT_DELETE": DELETED, "OBJECT_ARCHIVE": DELETED}
_EVENTBRIDGE = {"Object Created": CREATED, "Object Deleted": DELETED}
FORMS = ("a Cloud Storage CloudEvent (structured, or binary: ce-* headers + the object as the body), a Cloud "
         "Storage Pub/Sub notification, an S3 event notification (Records[]; also inside SQS or SNS messages) or an "
         "EventBridge S3 event")


@dataclass(frozen=True)
class ObjectEvent:
    """One object an event is about. `kind`: CREATED or DELETED, or None for an event to skip (`note` says why);
    `url`: s3://BUCKET/KEY or gs://BUCKET/NAME; `alternatives`: other spellings of the key to try when `url` names no
    object (EventBridge does not say whether its keys are URL-encoded); `version`: the GCS generation or S3 ETag the
    event is about (None: unknown); `source`: which form it came in."""

    kind: str | None
    url: str = ""
    version: str | None = None
    source: str = ""
    note: str = ""
    alternatives: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------ reading events


def parse_event(event: Any, headers: Mapping[str, str] | None = None) -> list[ObjectEvent]:
    """The objects an event is about (most events: one). `event`: the JSON document (a dict, or its text or bytes);
    `headers`: the HTTP headers it came with (binary-mode CloudEvents: `ce-type`, `ce-subject`, ...). An event of no
    known form is a UsageError naming the forms."""
    headers = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
    body = _json(event) if isinstance(event, (str, bytes, bytearray)) else event
    if "ce-type" in headers:  # binary mode: the attributes in headers, the data (the object) in the body
        attrs = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
        return [_cloudevent(attrs, body)]
    if not isinstance(body, dict):
        raise UsageError(f"not a storage event: expected a JSON object, got {type(body).__name__} ({FORMS})")
    if "specversion" in body and "type" in body:
        return [_cloudevent(body, body.get("data"))]
    if isinstance(body.get("Records"), list):
        found = [obj for record in body["Records"] for obj in _record(record)]
        if not found:
            raise UsageError("an event with no records: nothing to index")
        return found
    if body.get("detail-type") is not None and body.get("source") is not None:
        return [_eventbridge(body)]
    if isinstance(body.get("message"), dict) and "subscription" in body:
        return [_pubsub(body["message"])]
    if body.get("Type") in ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"):
        return _sns(body)
    if body.get("Event") == "s3:TestEvent":
        return [ObjectEvent(None, source="s3", note="S3's test event (sent when notifications are set up)")]
    raise UsageError(f"not a storage event picseek knows (keys: {', '.join(sorted(map(str, body))[:8]) or 'none'}): "
                     f"send {FORMS}")


def _json(text) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"the event is not JSON: {exc}") from None


def _cloudevent(attrs: Mapping[str, Any], data: Any) -> ObjectEvent:
    kind_of = attrs.get("type", "")
    if not str(kind_of).startswith("google.cloud.storage.object."):
        raise UsageError(f"CloudEvent of type {kind_of!r}: picseek reads Cloud Storage's "
                         "(google.cloud.storage.object.v1.finalized, .deleted, .archived)")
    kind = _GCS_TYPES.get(kind_of)
    data = data if isinstance(data, dict) else {}
    bucket = data.get("bucket") or str(attrs.get("source", "")).rpartition("/buckets/")[2]
    subject = str(attrs.get("subject", ""))
    name = data.get("name") or (subject[len("objects/"):] if subject.startswith("objects/") else "")
    if kind is None:
        return ObjectEvent(None, _url("gs", bucket, name) if bucket and name else "", source="gcs",
                           note=f"{kind_of.rsplit('.', 1)[-1]} events do not change what an image shows")
    return _object(kind, "gs", bucket, name, data.get("generation"), "gcs")


def _pubsub(message: Mapping[str, Any]) -> ObjectEvent:
    attrs = message.get("attributes") or {}
    kind = _GCS_PUBSUB.get(attrs.get("eventType", ""))
    if kind is None:
        if "eventType" not in attrs:
            raise UsageError(f"a Pub/Sub message without Cloud Storage's eventType attribute: send {FORMS}")
        return ObjectEvent(None, source="gcs-pubsub", note=f"{attrs['eventType']} does not change an image")
    return _object(kind, "gs", attrs.get("bucketId", ""), attrs.get("objectId", ""), attrs.get("objectGeneration"),
                   "gcs-pubsub")


def _record(record: Any) -> list[ObjectEvent]:
    if not isinstance(record, dict):
        raise UsageError(f"an event record that is not a JSON object: send {FORMS}")
    source = str(record.get("eventSource") or record.get("EventSource") or "")
    if source == "aws:sqs":  # a Lambda's SQS batch: each body is an S3 notification or an EventBridge event
        return parse_event(record.get("body", ""))
    if source == "aws:sns":
        return parse_event((record.get("Sns") or {}).get("Message", ""))
    if source != "aws:s3":
        raise UsageError(f"an event record from {source or 'an unknown source'!r}: picseek reads aws:s3 records "
                         "(S3 event notifications), also inside aws:sqs and aws:sns records")
    name = str(record.get("eventName", ""))
    kind = CREATED if name.startswith("ObjectCreated:") else DELETED if name.startswith("ObjectRemoved:") else None
    s3 = record.get("s3") or {}
    bucket, obj = (s3.get("bucket") or {}).get("name", ""), s3.get("object") or {}
    if kind is None:
        return [ObjectEvent(None, source="s3", note=f"{name or 'an unnamed event'} does not add or remove an image")]
    # S3 notifications URL-encode keys as a form does: spaces are '+', a '+' is %2B
    return [_object(kind, "s3", bucket, unquote_plus(str(obj.get("key", ""))), obj.get("eTag"), "s3")]


def _eventbridge(body: Mapping[str, Any]) -> ObjectEvent:
    if body.get("source") != "aws.s3":
        raise UsageError(f"an EventBridge event from {body.get('source')!r}: picseek reads aws.s3's")
    kind = _EVENTBRIDGE.get(str(body.get("detail-type")))
    if kind is None:
        return ObjectEvent(None, source="eventbridge", note=f"{body.get('detail-type')} does not change an image")
    detail = body.get("detail") or {}
    obj, bucket = detail.get("object") or {}, (detail.get("bucket") or {}).get("name", "")
    key = str(obj.get("key", ""))
    event = _object(kind, "s3", bucket, key, obj.get("etag"), "eventbridge")
    decoded = unquote_plus(key)
    if event.kind and decoded != key:  # (the key as given first; its URL-decoded spelling if that names nothing)
        event = replace(event, alternatives=(canonical_url(_url("s3", bucket, decoded)),))
    return event


def _sns(body: Mapping[str, Any]) -> list[ObjectEvent]:
    if body.get("Type") != "Notification":
        return [ObjectEvent(None, source="sns", note=f"SNS {body.get('Type')}: confirm the subscription with its "
                                                     f"SubscribeURL ({body.get('SubscribeURL', 'none given')})")]
    return parse_event(body.get("Message", ""))


def _object(kind: str, scheme: str, bucket: str, name: str, version: Any, source: str) -> ObjectEvent:
    if not bucket or not name:
        raise UsageError(f"a {source} event without {'a bucket' if not bucket else 'an object name'}")
    url = _url(scheme, bucket, name)
    if name.endswith("/"):
        return ObjectEvent(None, url, source=source, note="a folder marker, not an image")
    if not has_image_extension(name) or any(p.startswith(".") for p in name.split("/")):
        return ObjectEvent(None, url, source=source, note="not an image file name (or a hidden one)")
    version = None if version in (None, "") else str(version).strip('"')
    return ObjectEvent(kind, canonical_url(url), version, source)


def _url(scheme: str, bucket: str, name: str) -> str:
    return f"{scheme}://{bucket}/{name}"


# ------------------------------------------------------------------------------------------ applying one event


def apply(store, embedder: Callable[[], Any], event: ObjectEvent, *, info: Callable[[str], Mapping | None],
          decode: Callable[[str, Any], Any], roots: Iterable[str] = ()) -> dict:
    """Bring `store` in step with the one object `event` is about; returns the answer (see `answer`).
    `embedder()`: the library's model (called only when an image is to be embedded); `info(url)`: the object's
    current metadata from storage, None when there is no such object (errors: StorageError/UsageError, raised);
    `decode(url, spec)`: ingest.images.decode_file; `roots`: when given, objects outside them are skipped."""
    if event.kind is None:
        return answer("skipped", event, reason=event.note)
    roots = list(roots)
    if roots and not within(event.url, roots):
        return answer("skipped", event, reason="outside the library's event roots: " + ", ".join(roots))
    url, current = event.url, info(event.url)
    for other in event.alternatives if current is None else ():
        found = info(other)
        if (event.kind == CREATED and found is not None) or (
                event.kind == DELETED and store.find_path(url) is None and store.find_path(other) is not None):
            url, current = other, found
            break
    event = replace(event, url=url)
    if event.kind == DELETED:
        return _deleted(store, event, current)
    if current is None:
        return answer("ignored", event, reason="the object is gone (deleted after this event; its own event "
                                               "removes it)")
    stale = _stale(event, current)
    if stale:
        return stale
    from .remote import change_marker

    entry = FileEntry(url, int(current.get("size") or 0), change_marker(current))
    state = store.file_states([url]).get(url)
    if state is not None and (state.size, state.mtime_ns) == (entry.size, entry.mtime_ns):
        return answer("unchanged", event, image_id=state.id)
    if state is None and store.known_errors([url]).get(url) == (entry.size, entry.mtime_ns):
        failed = next((e["reason"] for e in store.errors() if e["path"] == url), "failed before")
        return answer("failed", event, reason=f"{failed} (recorded before; unchanged since)")
    from .pipeline import embed_batches

    model = embedder()
    decoded = decode(url, model.image_spec)
    for _, records, bad in embed_batches(model, [(entry, decoded)], 1):
        store.write_images(records, bad)
    if decoded.error is not None:
        return answer("failed", event, reason=decoded.error)
    return answer("updated" if state is not None else "indexed", event, image_id=store.find_path(url))


def _deleted(store, event: ObjectEvent, current: Mapping | None) -> dict:
    if current is not None:
        return answer("ignored", event, reason="the object exists (written again after this event)")
    image_id = store.find_path(event.url)
    removed = store.delete_paths([event.url])
    return answer("removed" if removed else "unchanged", event, image_id=image_id,
                  reason=None if removed else "not in the library")


def _stale(event: ObjectEvent, current: Mapping) -> dict | None:
    """An answer when the event is about another version than the object's current one, else None."""
    now = current.get("generation") if event.source.startswith("gcs") else current.get("ETag", current.get("etag"))
    if event.version is None or now in (None, ""):
        return None
    now = str(now).strip('"')
    if now == event.version:
        return None
    if event.source.startswith("gcs") and now.isdigit() and event.version.isdigit() and int(event.version) > int(now):
        raise StorageError(f"{event.url}: generation {event.version} of this event is not readable yet (the bucket "
                           f"shows {now}); deliver the event again")
    return answer("ignored", event, reason=f"stale: the event is about version {event.version}, the object is now "
                                           f"{now} (its own event indexes that)")


def answer(action: str, event: ObjectEvent, *, image_id: int | None = None, reason: str | None = None) -> dict:
    """What an event did to one object: action (indexed, updated, removed, unchanged, skipped, ignored, failed), the
    object's URL, the event's kind (created, deleted, or None), the image id (where one is or was indexed) and
    the reason (skipped, ignored, failed)."""
    out: dict[str, Any] = {"action": action, "url": event.url or None, "event": event.kind, "id": image_id}
    if reason:
        out["reason"] = reason
    return out


# what keeps an event from being handled now but not later: the platform should deliver it again
_RETRY = ((IndexBusyError, "busy"), (LibraryIOError, "library_unavailable"), (StorageError, "storage_unavailable"),
          (ModelError, "model_unavailable"))


def error_answer(exc: PicseekError) -> dict:
    """The answer for an event that could not be handled: {"action": "error", "error": one line, "code", "retry"}.
    retry: the same event may succeed later (another run held the library, storage or the library's disk or the
    model could not be reached): the platform should deliver it again. A bad event (UsageError) is never retried."""
    code = next((c for kind, c in _RETRY if isinstance(exc, kind)), None)
    if code is None:
        code = "bad_event" if isinstance(exc, UsageError) else "error"
    return {"action": "error", "error": str(exc), "code": code, "retry": code in dict(_RETRY).values()}

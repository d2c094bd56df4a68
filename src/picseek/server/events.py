"""The event receiver (`picseek event --serve`): a small HTTP app, apart from the search server, that indexes or
removes the one object each storage event is about (Library.handle_event; ingest/events.py reads the forms).

    POST /  or  POST /events   one event: a CloudEvent (structured JSON, or binary: ce-* headers + the object's
                               JSON), an S3 notification (also inside SQS/SNS), an EventBridge S3 event, a Pub/Sub
                               push of a Cloud Storage notification
    GET /healthz               {"ok": true}

Answers: 200 with what was done (indexed, updated, removed, unchanged, skipped, ignored, failed: a broken image is
recorded and not retried); 400 for a body that is no event picseek knows (retrying will not help); 503 with
Retry-After when the same event may succeed later (another index run holds the library, storage or the library's
disk cannot be reached): push platforms (Eventarc, Pub/Sub push, EventBridge API destinations, SQS consumers)
deliver it again. 401 without the token, where one is set.

The search server stays read-only: `picseek serve` has no route that takes events.
"""
from __future__ import annotations

import hmac
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .._version import __version__
from ..errors import PicseekError
from ..ingest.events import error_answer

log = logging.getLogger(__name__)
MAX_EVENT_BYTES = 1_000_000  # SQS/EventBridge/Pub/Sub messages are at most 256 KB-10 MB; a storage event is ~2 KB
RETRY_AFTER = "5"


def create_events_app(lib, *, token: str | None = None, roots: tuple[str, ...] = (),
                      storage_options: dict | None = None, wait: float = 10.0) -> FastAPI:
    """The receiver for one open Library. `token`: required as 'Authorization: Bearer TOKEN' when set; `roots`:
    only objects below these URLs are indexed; `wait`: seconds an event waits for another index run."""
    app = FastAPI(title="picseek events", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)

    def refused(request: Request) -> JSONResponse | None:
        if not token:
            return None
        sent = request.headers.get("authorization", "")
        if hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return None
        return JSONResponse({"action": "error", "error": "this receiver needs its token: send 'Authorization: "
                             "Bearer $PICSEEK_TOKEN'", "code": "unauthorized", "retry": False}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    async def receive(request: Request) -> JSONResponse:
        if (answer := refused(request)) is not None:
            return answer
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_EVENT_BYTES:
                return JSONResponse({"action": "error", "error": f"event larger than {MAX_EVENT_BYTES} bytes",
                                     "code": "too_large", "retry": False}, status_code=413)
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("ce-")}
        from starlette.concurrency import run_in_threadpool

        try:
            out = await run_in_threadpool(lib.handle_event, body, headers, roots=roots,
                                          storage_options=storage_options, wait=wait)
        except PicseekError as exc:
            answer = error_answer(exc)
            log.warning("event not handled (%s): %s", answer["code"], answer["error"])
            status = 503 if answer["retry"] else 400
            return JSONResponse(answer, status_code=status, headers={"Retry-After": RETRY_AFTER} if answer["retry"]
                                else None)
        except Exception:  # noqa: BLE001 - logged; the platform may deliver it again
            log.exception("unexpected error handling an event")
            return JSONResponse({"action": "error", "error": "internal error (logged by the receiver)",
                                 "code": "internal_error", "retry": True}, status_code=500)
        log.info("event: %s", out)
        return JSONResponse(out)

    app.add_api_route("/", receive, methods=["POST"])
    app.add_api_route("/events", receive, methods=["POST"])

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    return app

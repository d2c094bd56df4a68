"""picseek event: index or remove the one object a storage event is about; with --serve, the HTTP receiver that does
it for each event a platform pushes (server/events.py)."""
from __future__ import annotations

import json
import os
import sys

import click

from ..errors import PicseekError, UsageError
from .group import _open, cli, fail
from .options import model_option

EPILOG_EVENT = """\b
Examples:
  picseek --store chroma://chroma:8000/photos event event.json
  aws sqs receive-message --queue-url URL --query 'Messages[0].Body' --output text | picseek event -
  picseek event --root s3://bucket/photos msg.json   # objects elsewhere in the bucket are skipped
  picseek event gcs.json --header ce-type:google.cloud.storage.object.v1.finalized \\
      --header ce-subject:objects/a.jpg --header ce-source://storage.googleapis.com/projects/_/buckets/b
  PORT=8080 picseek event --serve --host 0.0.0.0 --no-token   # behind Cloud Run's IAM (Eventarc)
The forms, the answers and the deployment: docs/deployment.md ("Serverless").
"""


def _headers(pairs) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"bad header {pair!r}: use NAME:VALUE (e.g. ce-type:google.cloud.storage.object.v1."
                             "finalized)")
        out[name.strip().lower()] = value.strip()
    return out


@cli.command(epilog=EPILOG_EVENT)
@click.argument("source", required=False, metavar="[FILE]")
@click.option("--header", "header", multiple=True, metavar="NAME:VALUE",
              help="An HTTP header the event came with (repeatable): a binary-mode CloudEvent's ce-type, ce-subject, "
                   "ce-source, ... with the object's JSON as FILE.")
@click.option("--root", "roots", multiple=True, metavar="URL",
              help="Index only objects at or below URL (repeatable; e.g. s3://bucket/photos); others are skipped.")
@model_option()
@click.option("--storage-option", "storage_option", multiple=True, metavar="KEY=VALUE",
              help="Option for the fsspec backend of the bucket (repeatable; JSON values), e.g. "
                   "endpoint_url=http://minio:9000. Or AWS_ENDPOINT_URL, FSSPEC_S3_ENDPOINT_URL, ...")
@click.option("--wait", type=click.FloatRange(0, 600), default=10, show_default=True, metavar="SECONDS",
              help="How long an event waits for another index run on the library before it is answered busy "
                   "(retry: true; the platform delivers it again).")
@click.option("--serve", is_flag=True, help="Receive events over HTTP instead (POST / or /events; one library, one "
              "event at a time per library; 503 + Retry-After when busy). The search server stays read-only.")
@click.option("--host", default="127.0.0.1", show_default=True, help="With --serve: address to listen on.")
@click.option("--port", "-p", default=8080, show_default=True, type=click.IntRange(0, 65535), envvar="PORT",
              show_envvar=True, help="With --serve: port to listen on (Cloud Run sets PORT).")
@click.option("--token", envvar="PICSEEK_TOKEN", show_envvar=True,
              help="With --serve: events need 'Authorization: Bearer TOKEN'. Prefer the environment variable.")
@click.option("--no-token", "no_token", is_flag=True,
              help="With --serve beyond loopback: accept events without a token, because the platform authenticates "
                   "every caller first (Cloud Run with IAM invokers, as Eventarc calls it; a private network).")
@click.pass_context
def event(ctx, source, header, roots, model, storage_option, wait, serve, host, port, token, no_token):
    """Index or remove the one object a storage event is about, and print what was done as JSON.

    FILE (default: standard input) holds one event: a Cloud Storage CloudEvent (object finalized, deleted,
    archived), an S3 event notification (also inside an SQS or SNS message), an EventBridge S3 event (Object
    Created, Object Deleted) or a Cloud Storage Pub/Sub notification. The object's current state in the bucket
    decides: a repeated or late event changes nothing; non-image keys are skipped; a broken image is recorded.

    The answer: {"action": indexed | updated | removed | unchanged | skipped | ignored | failed, "url", "event",
    "id", "reason"}; on an error {"action": "error", "error", "code", "retry"} (and exit status 2 or 3): retry
    true means the same event may succeed later (the library is busy, storage cannot be reached).
    """
    from ..ingest.remote import parse_storage_options

    options = parse_storage_options(storage_option) or None
    if serve:
        if source or header:
            raise click.UsageError("--serve receives events over HTTP: give no FILE or --header")
        return _serve(ctx, model, host, port, token, no_token, tuple(roots), options, wait)
    if no_token:
        raise click.UsageError("--no-token goes with --serve")
    headers = _headers(header)
    if source in (None, "-"):
        if sys.stdin.isatty():
            raise UsageError("give the event: a FILE, or its JSON on standard input (picseek event - < event.json)")
        data = sys.stdin.buffer.read()
    else:
        try:
            with open(source, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise UsageError(f"cannot read the event file {source}: {exc.strerror}") from None
    from ..ingest.events import error_answer

    try:
        lib = _open(ctx, model, create=True)
        out = lib.handle_event(data, headers, roots=roots, storage_options=options, wait=wait)
    except PicseekError as exc:
        click.echo(json.dumps(error_answer(exc)))
        fail(str(exc), exc.exit_code)
    click.echo(json.dumps(out, indent=2))


def _serve(ctx, model, host, port, token, no_token, roots, options, wait) -> None:
    try:
        from ..server.events import create_events_app
        from ..server.run import listen, serve_forever, url_of
        from ..server.settings import is_loopback
    except ImportError as exc:
        raise UsageError(f"the receiver needs the server extra: pip install 'picseek[server]' ({exc.name} is "
                         "missing)") from None
    if not is_loopback(host) and not token and not no_token:
        raise UsageError(f"receiving events on {host} lets other machines change the library: set PICSEEK_TOKEN "
                         "(callers send 'Authorization: Bearer TOKEN'), or --no-token where the platform "
                         "authenticates every caller (Cloud Run IAM), or bind to 127.0.0.1")
    if token and len(token) < 8:
        raise UsageError("PICSEEK_TOKEN is too short: use at least 8 characters")
    lib = _open(ctx, model, create=True)
    sock = listen(host, port)
    verbose = ctx.find_root().params.get("verbose", 0)
    click.echo(f"picseek: receiving storage events for {lib.path} ({lib.store.url}) at {url_of(sock)}/ "
               f"(pid {os.getpid()}; Ctrl+C stops)", err=True)
    try:
        serve_forever(create_events_app(lib, token=token or None, roots=roots,
                                        storage_options=options, wait=wait), sock,
                      log_level="info" if verbose else "warning", access_log=verbose > 1)
    except KeyboardInterrupt:
        pass
    click.echo("picseek: receiver stopped", err=True)

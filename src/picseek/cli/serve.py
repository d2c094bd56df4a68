"""picseek serve: the REST API and the web page, with background indexing of the folders given."""
from __future__ import annotations

import os

import click

from ..errors import UsageError
from .group import _open, cli
from .options import model_option, ocr_option

EPILOG_SERVE = """\b
Examples:
  picseek serve ~/Pictures                  # index in the background, search at http://127.0.0.1:8000/
  picseek serve --port 8080                 # an existing library, another port
  PICSEEK_TOKEN=$(openssl rand -hex 16) picseek serve --host 0.0.0.0 ~/Pictures   # reachable from the LAN
  picseek serve --workers 4 ~/Pictures      # 4 web worker processes (behind nginx: docs/deployment.md)
  picseek serve --watch ~/Pictures          # new, changed, moved, deleted photos show up by themselves
"""


@cli.command(epilog=EPILOG_SERVE)
@click.argument("folders", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback makes the library reachable from other machines "
                   "and needs PICSEEK_TOKEN.")
@click.option("--port", "-p", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@model_option()
@click.option("--token", envvar="PICSEEK_TOKEN", show_envvar=True,
              help="Bearer token for write operations (index, tags). Prefer the environment variable: a command "
                   "line is visible to other users.")
@click.option("--require-token", is_flag=True, help="Require the token for writes even on loopback.")
@click.option("--cors-origin", multiple=True, metavar="ORIGIN",
              help="Let web pages from ORIGIN (e.g. https://photos.example.org) call the API (repeatable; "
                   "default: none).")
@click.option("--allowed-host", multiple=True, metavar="NAME",
              help="Also accept requests for this Host name (repeatable). On loopback only loopback names are "
                   "accepted by default; elsewhere any name, or only the listed ones (and loopback names, for health "
                   "checks) once one is given.")
@click.option("--no-index", is_flag=True, help="Do not index FOLDERS at start (POST /api/index starts a run).")
@click.option("--watch", is_flag=True, help="Follow FOLDERS as picseek watch does: file events and a re-scan every "
              "watch_rescan seconds keep the library in step (one worker watches).")
@ocr_option("Index runs read the words in images (OCR, pip install 'picseek[ocr]'), and the library keeps doing it "
            "(see index --ocr); --no-ocr stops it.")
@click.option("--workers", "-w", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Web worker processes. Each loads the model and answers searches from the same library; index "
                   "runs happen in one of them at a time. (Decode workers of index runs: --index-workers.)")
@click.option("--index-workers", type=click.IntRange(0, 64),
              help="Decode worker processes for index runs (default: one per CPU core; 0 decodes in the server).")
@click.option("--forwarded-allow-ips", default="127.0.0.1", show_default=True, metavar="ADDRESSES",
              envvar="PICSEEK_FORWARDED_ALLOW_IPS", show_envvar=True,
              help="Reverse proxies whose X-Forwarded-For/-Proto headers give the client's address and scheme "
                   "(comma-separated addresses or networks; '*' trusts any: only when no one else can reach the "
                   "port). Writes relayed by a proxy always need PICSEEK_TOKEN.")
@click.option("--max-upload-mb", type=click.FloatRange(0.01, 2000), default=20, show_default=True,
              help="Largest query image a client may upload, in MB.")
@click.option("--max-upload-mp", type=click.FloatRange(0.01, 1000), default=50, show_default=True,
              help="Largest query image a client may upload, in megapixels.")
@click.pass_context
def serve(ctx, folders, host, port, model, token, require_token, cors_origin, allowed_host, no_index, watch, ocr,
          workers, index_workers, forwarded_allow_ips, max_upload_mb, max_upload_mp):
    """Serve the web page and the REST API (OpenAPI at /docs) for the library; index FOLDERS in the background.

    Safe by default: listens on 127.0.0.1 only, serves only indexed images by id, bounds uploads, and needs
    the token (PICSEEK_TOKEN, sent as 'Authorization: Bearer TOKEN') for writes when reachable from other
    machines.
    """
    try:
        from ..server import ServerSettings, create_app
        from ..server.run import listen, serve_forever, serve_workers, url_of
    except ImportError as exc:
        raise UsageError(f"the server needs its extra: pip install 'picseek[server]' ({exc.name} is missing)") from None
    settings = ServerSettings(
        host=host, port=port, folders=tuple(os.path.abspath(f) for f in folders), token=token or None,
        require_token=require_token, allowed_hosts=tuple(allowed_host) or None, cors_origins=tuple(cors_origin),
        max_upload_bytes=int(max_upload_mb * 1e6), max_upload_pixels=int(max_upload_mp * 1e6),
        index_workers=index_workers, index_on_start=not no_index, watch=watch, ocr=ocr)
    if watch and not folders:
        raise UsageError("--watch needs the FOLDERS to follow")
    settings.check()
    lib = _open(ctx, model, create=True)
    sock = listen(host, port)
    verbose = ctx.find_root().params.get("verbose", 0)
    run = {"log_level": "info" if verbose else "warning", "access_log": verbose > 1,
           "forwarded_allow_ips": forwarded_allow_ips}
    click.echo(f"picseek: serving {lib.path} at {url_of(sock)}/ "
               f"({workers} worker{'s' if workers > 1 else ''}; Ctrl+C stops)", err=True)
    try:
        if workers > 1:
            from ..server.workers import FACTORY, export_spec

            export_spec(lib.path, model, settings)
            lib.close()  # each worker opens its own
            serve_workers(FACTORY, workers, sock, **run)
        else:
            serve_forever(create_app(lib, settings), sock, **run)
    except KeyboardInterrupt:  # uvicorn shut down cleanly, then re-raised the Ctrl+C: the normal way to stop
        pass
    click.echo("picseek: server stopped", err=True)

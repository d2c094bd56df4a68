"""/docs and /redoc are served with their files from this server (no CDN), under a Content-Security-Policy that
allows Swagger UI's one inline script by its hash. (tests/browser/test_docs_offline.py runs them in a browser.)"""
from __future__ import annotations

import base64
import hashlib
import re

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed: pip install -e '.[test,server]'")
from fastapi.testclient import TestClient  # noqa: E402

from picseek.server import ServerSettings, create_app  # noqa: E402
from picseek.server.docs import assets_folder  # noqa: E402


@pytest.fixture(scope="module")
def client():
    assert assets_folder() is not None, "fastapi-offline (the server extra) is not installed"
    # (no lifespan: the pages need no library)
    return TestClient(create_app(None, ServerSettings()), base_url="http://127.0.0.1:8000")


def local_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_swagger_ui_loads_only_local_files_and_its_inline_script_is_allowed(client):
    res = client.get("/docs")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    urls = local_urls(res.text)
    assert urls and all(u.startswith("/docs-assets/") for u in urls), urls
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url
    (inline,) = re.findall(r"<script>(.*?)</script>", res.text, re.S)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    csp = res.headers["content-security-policy"]
    assert f"script-src 'self' 'sha256-{digest}';" in csp and "connect-src 'self'" in csp
    assert "http" not in csp and "'unsafe-eval'" not in csp
    assert "validatorUrl" in inline  # no badge fetched from validator.swagger.io


def test_redoc_loads_only_local_files(client):
    res = client.get("/redoc")
    assert res.status_code == 200
    urls = local_urls(res.text)
    assert "/docs-assets/redoc.standalone.js" in urls and all(u.startswith("/docs-assets/") for u in urls), urls
    assert "fonts.googleapis" not in res.text and "http" not in res.headers["content-security-policy"]
    assert client.get("/docs-assets/redoc.standalone.js").status_code == 200


def test_the_docs_pages_are_not_operations_of_the_api(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(p.startswith(("/docs", "/redoc")) for p in paths)

"""The deployment files agree with each other, with the CLI and with the docs: Dockerfile, .dockerignore,
compose.yaml, deploy/nginx.conf and deploy/picseek.service. (Docker cannot run here; nginx runs in
tests/integration/test_proxy.py.)"""
from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import click
import pytest
import yaml

from picseek.cli import cli

ROOT = Path(__file__).resolve().parents[2]
SERVE = cli.commands["serve"]


def dockerfile() -> dict[str, list[str]]:
    """Instruction -> its arguments, one entry per occurrence (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.setdefault(word.upper(), []).append(rest.strip())
    return out


def exec_form(value: str) -> list[str]:
    return yaml.safe_load(value)  # a JSON array


def serve_options() -> set[str]:
    return {opt for p in SERVE.params if isinstance(p, click.Option) for opt in p.opts}


def assert_serve_args(args: list[str]) -> None:
    """`serve ...` arguments that the real CLI accepts: known options, and a value after each that takes one."""
    assert args[0] == "serve"
    takes_value = {opt for p in SERVE.params if isinstance(p, click.Option) and not p.is_flag for opt in p.opts}
    i = 1
    while i < len(args):
        if args[i].startswith("-"):
            assert args[i] in serve_options(), f"picseek serve has no option {args[i]}"
            i += 2 if args[i] in takes_value else 1
        else:
            i += 1


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_dockerfile_is_a_thin_wrapper_over_the_install_script():
    d = dockerfile()
    assert d["FROM"] == ["python:3.11-slim"]
    (run,) = [r for r in d["RUN"] if "install.sh" in r]
    script = re.search(r"(\S*scripts/install\.sh)", run).group(1)
    assert (ROOT / "scripts" / "install.sh").is_file() and script.endswith("scripts/install.sh")
    assert '--extras "$EXTRAS"' in run and any(a == "EXTRAS=server" for a in d["ARG"])
    assert "server" in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "--venv /opt/picseek" in run and "PATH=/opt/picseek/bin:$PATH" in " ".join(d["ENV"])
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ignored[ignored.index("**") + 1:][:4] == ["!pyproject.toml", "!README.md", "!src/", "!scripts/install.sh"]


def test_the_container_serves_beyond_loopback_with_a_token_as_a_user_with_volumes():
    d = dockerfile()
    (user,) = d["USER"]
    assert user not in ("root", "0") and "useradd --system --uid 10001 --user-group" in " ".join(d["RUN"])
    assert set(exec_form(d["VOLUME"][0])) == {"/data", "/photos"}
    assert "PICSEEK_LIBRARY=/data/library" in " ".join(d["ENV"])
    assert exec_form(d["ENTRYPOINT"][0]) == ["picseek"]
    cmd = exec_form(d["CMD"][0])
    assert_serve_args(cmd)
    assert option(cmd, "--host") == "0.0.0.0" and "--require-token" in cmd and cmd[-1] == "/photos"
    assert d["EXPOSE"] == [option(cmd, "--port")]
    health = d["HEALTHCHECK"][0]
    assert f"http://127.0.0.1:{option(cmd, '--port')}/api/status" in health


def test_compose_puts_nginx_with_the_shipped_config_in_front():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    app, proxy = compose["services"]["picseek"], compose["services"]["nginx"]
    assert app["command"] == exec_form(dockerfile()["CMD"][0])
    assert "ports" not in app, "only nginx is published: the app trusts any proxy's X-Forwarded-* headers"
    assert app["environment"]["PICSEEK_FORWARDED_ALLOW_IPS"] == "*"
    assert app["environment"]["PICSEEK_TOKEN"].startswith("${PICSEEK_TOKEN:?")  # compose refuses to start without
    mounts = {v.rsplit("}", 1)[-1].split(":")[1]: v for v in app["volumes"]}  # ${VAR:-default}:/target[:ro]
    assert set(mounts) == {"/data", "/photos"} and mounts["/photos"].endswith(":ro")
    assert app["expose"] == [option(app["command"], "--port")]
    (conf,) = proxy["volumes"]
    source, target, mode = conf.split(":")
    assert (ROOT / source).resolve() == ROOT / "deploy" / "nginx.conf" and mode == "ro"
    assert target.startswith("/etc/nginx/conf.d/")
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert f"server picseek:{option(app['command'], '--port')};" in nginx
    (published,) = proxy["ports"]
    assert re.search(r"^\s*listen (\d+);", nginx, re.M).group(1) == published.split(":")[1]
    assert proxy["depends_on"]["picseek"]["condition"] == "service_healthy"


def test_nginx_upload_limit_matches_the_server_default():
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    default_mb = next(p.default for p in SERVE.params if p.name == "max_upload_mb")
    limit = re.search(r"client_max_body_size (\d+)m;", nginx).group(1)
    assert int(limit) == default_mb and f"at most {limit} MB" in nginx
    assert int(limit) * 2**20 >= default_mb * 1e6 + 256 * 1024  # the app's own limit (+ form overhead) fits


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string((ROOT / "deploy" / "picseek.service").read_text())
    return parser


def test_systemd_unit_runs_a_hardened_dedicated_user_with_a_token_file():
    s = unit()["Service"]
    assert s["User"] == "picseek" and s["Restart"] == "on-failure"
    assert s["EnvironmentFile"].startswith("/etc/picseek/") and s["ProtectSystem"] == "strict"
    assert s["NoNewPrivileges"] == "yes" and s["CapabilityBoundingSet"] == ""
    env = dict(kv.split("=", 1) for kv in shlex.split(s["Environment"]))
    writable = s["ReadWritePaths"].split()
    assert any(env["PICSEEK_LIBRARY"].startswith(w + "/") for w in writable)
    assert any(env["PICSEEK_CACHE_DIR"] == w for w in writable)
    exec_start = shlex.split(s["ExecStart"])
    assert exec_start[0] == "/opt/picseek/bin/picseek"  # the venv the install line in the unit's header makes
    assert "install.sh --venv /opt/picseek --extras server" in (ROOT / "deploy" / "picseek.service").read_text()
    assert_serve_args(exec_start[1:])
    assert option(exec_start, "--host") == "127.0.0.1" and "--require-token" in exec_start
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert f"127.0.0.1:{option(exec_start, '--port')} when `picseek serve` runs on this machine" in nginx


def test_systemd_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed")
    text = (ROOT / "deploy" / "picseek.service").read_text().replace("/opt/picseek/bin/picseek", "/bin/true")
    (tmp_path / "picseek.service").write_text(text)
    res = subprocess.run([analyze, "verify", str(tmp_path / "picseek.service")], capture_output=True, text=True,
                         timeout=60)
    problems = [line for line in (res.stdout + res.stderr).splitlines()
                if re.search(r"Unknown|Invalid|Failed|not allowed|ignoring", line)]
    assert res.returncode == 0 and not problems, problems


def test_deployment_doc_names_the_ports_volumes_and_files():
    doc = (ROOT / "docs" / "deployment.md").read_text()
    for needle in ("scripts/install.sh", "Dockerfile", "compose.yaml", "deploy/nginx.conf", "deploy/picseek.service",
                   "/data", "/photos", "8000", "8080", "--workers", "--forwarded-allow-ips", "PICSEEK_TOKEN"):
        assert needle in doc, needle

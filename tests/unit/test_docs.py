"""Docs that can be checked are checked: CLI help and settings are documented, README and CI agree."""
import re
from pathlib import Path

import click
import pytest

from picseek import config
from picseek.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def _commands():
    return list(cli.commands.items())


@pytest.mark.parametrize("name, cmd", _commands())
def test_every_command_and_option_has_help_and_is_in_cli_docs(name, cmd):
    doc = (ROOT / "docs" / "cli.md").read_text()
    assert cmd.help, f"command {name} has no help"
    assert f"## picseek {name}" in doc, f"docs/cli.md lacks command {name} (python scripts/cli_docs.py)"
    for param in cmd.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts} has no help"
            for opt in param.opts:
                assert opt in doc, f"docs/cli.md lacks {name} {opt} (python scripts/cli_docs.py)"


def test_cli_docs_are_current():
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("cli_docs", ROOT / "scripts" / "cli_docs.py")
    mod = module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (ROOT / "docs" / "cli.md").read_text() == mod.render(), "run: python scripts/cli_docs.py"


def test_every_setting_is_documented():
    doc = (ROOT / "docs" / "cli.md").read_text()
    for s in config.SETTINGS.values():
        assert s.help and config.env_name(s.name) in doc


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text().splitlines()
    block = readme[readme.index("```bash") + 1: readme.index("```bash") + 5]
    commands = [line for line in block if line and not line.startswith("#")]
    assert len(commands) == 2 and "picseek index" in commands[0] and "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci, ".ci/run must run the README's test command"
    assert all(c.startswith("bash scripts/install.sh ") for c in commands), "both install with scripts/install.sh"
    assert "--extras dev" in commands[1], "the tests need every extra: the dev extra gathers them"
    strict = re.search(r"^export PICSEEK_TEST_STRICT=1$", ci, re.M)
    assert strict and strict.start() < ci.index(commands[1]), "CI must fail, not skip, a test whose tool is missing"
    assert "scripts/install.sh --apt" in ci, "CI installs the Debian packages the tests drive with the same script"


def test_install_script_puts_cpu_torch_first_where_an_extra_needs_it(tmp_path):
    import subprocess

    script = ROOT / "scripts" / "install.sh"
    out = subprocess.run(["bash", str(script), "--dry-run", "--venv", str(tmp_path / "v"), "--extras", "dev",
                          "--editable"], capture_output=True, text=True, check=True).stderr
    steps = [line[2:] for line in out.splitlines() if line.startswith("+ ")]
    assert steps[0] == f"python3 -m venv {tmp_path / 'v'}"
    assert steps[1].endswith("pip install -q torch==2.13.0") and steps[1].startswith(str(tmp_path / "v" / "bin"))
    assert steps[2].endswith(f"pip install -q -e {ROOT}[dev]")
    server = subprocess.run(["bash", str(script), "--dry-run", "--extras", "server", "--torch-index", "https://x/cpu"],
                            capture_output=True, text=True, check=True).stderr
    assert "torch" not in server and f"install -q {ROOT}[server]" in server  # the default install needs no torch
    both = subprocess.run(["bash", str(script), "--dry-run", "--extras", "server,torch", "--torch-index",
                           "https://x/cpu"], capture_output=True, text=True, check=True).stderr
    assert "pip install -q --index-url https://x/cpu torch==2.13.0" in both
    assert f"install -q {ROOT}[server,torch]" in both
    bad = subprocess.run(["bash", str(script), "--extras", "dev;rm"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--extras" in bad.stderr


def test_dev_extra_gathers_every_other_extra_the_tests_use():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    dev, *references = extras["dev"]  # then the reference implementations some tests compare with
    gathered = set(re.fullmatch(r"picseek\[([a-z0-9_,-]+)\]", dev.replace(" ", "")).group(1).split(","))
    assert {"test", "server", "torch", "large"} <= gathered and gathered <= set(extras) - {"dev"}
    assert all(not r.startswith("picseek") for r in references)

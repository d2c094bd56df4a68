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
    assert re.search(r"pip install torch==2\.13\.0", commands[0])

"""A feature whose optional packages are missing says, in one line and at the moment it is asked for, which extra
to install; nothing else is touched (torch is hidden here by making its module spec unfindable)."""
from __future__ import annotations

import importlib.util

import pytest

from picseek import extras
from picseek.errors import MissingExtraError

real_find_spec = importlib.util.find_spec


@pytest.fixture
def no_torch(monkeypatch):
    monkeypatch.setattr(extras, "find_spec", lambda name, *a: None if name in ("torch", "transformers")
                        else real_find_spec(name, *a))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "pip install 'picseek[torch]'" in text, text
    return text


def test_hugging_face_models_blip_and_training_name_the_torch_extra(no_torch, tmp_path):
    from picseek.learn.data import Dataset
    from picseek.learn.train import TrainOptions, train
    from picseek.models import blip, hf
    from picseek.models.registry import resolve

    with pytest.raises(MissingExtraError) as exc:
        hf.load(resolve("hf:org/some-clip"), precision="fp32")
    assert "hf:org/some-clip" in _one_line(exc)
    with pytest.raises(MissingExtraError) as exc:
        blip.load(resolve("hf:org/some-blip"))
    assert "re-ranking" in _one_line(exc)
    with pytest.raises(MissingExtraError) as exc:
        train(Dataset([], [], []), TrainOptions(out=str(tmp_path / "m")))
    assert "training" in _one_line(exc)


def test_the_cli_prints_one_line_and_exits_2(no_torch, tmp_path, capsys):
    from picseek.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--library", str(tmp_path / "lib"), "index", str(tmp_path), "--model", "hf:org/some-clip",
              "--precision", "fp32"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "picseek[torch]" in err, err


def test_nothing_is_asked_when_the_modules_are_there():
    extras.require("anything")  # torch and transformers are installed in the test environment

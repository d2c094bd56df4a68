"""Defaults are declared once, in config.SETTINGS; what takes a default elsewhere reads it from there, and the commands
pass the effective setting (environment, config file) on."""
from __future__ import annotations

import inspect

import pytest
from click.testing import CliRunner

from picseek import config
from picseek.ingest import images, pipeline
from picseek.ingest.download import DownloadOptions
from picseek.scale import spark, spark_job
from picseek.scale.tasks import TaskSpec


def test_function_defaults_are_the_settings_defaults():
    opts = DownloadOptions()
    assert opts.max_bytes == config.default("url_max_bytes") == 50_000_000
    assert opts.timeout == config.default("url_timeout") == 15.0
    assert opts.concurrency == config.default("download_concurrency")
    assert opts.max_pixels == images.DEFAULT_MAX_PIXELS == config.default("max_image_pixels") == 250_000_000
    assert TaskSpec("m").batch_size == pipeline.DEFAULT_BATCH_SIZE == config.default("batch_size") == 16
    assert inspect.signature(pipeline.run_index).parameters["batch_size"].default == 16
    params = inspect.signature(spark.index_on_spark).parameters
    assert params["batch_size"].default == 16 and params["max_pixels"].default == 250_000_000


@pytest.fixture
def spark_calls(monkeypatch):
    """`index --engine spark` up to the call of index_on_spark, which only records what it was given."""
    calls = []

    def fake_index_on_spark(master, inputs, shards_dir, **kwargs):
        calls.append(kwargs)
        return spark.SparkReport(shards=str(shards_dir), master=master or "local", model=kwargs["model"])

    monkeypatch.setattr(spark, "index_on_spark", fake_index_on_spark)
    monkeypatch.setattr(spark, "model_for_library", lambda lib, asked: "builtin")
    return calls


def _index_on_spark(tmp_path, *extra):
    (tmp_path / "photos").mkdir(exist_ok=True)
    from picseek.cli import cli

    res = CliRunner().invoke(cli, ["--library", str(tmp_path / "lib"), "index", str(tmp_path / "photos"),
                                   "--engine", "spark", "--shards", str(tmp_path / "shards"), "--json", *extra])
    assert res.exit_code == 0, res.output


def test_spark_index_takes_the_batch_size_setting(spark_calls, tmp_path, monkeypatch):
    _index_on_spark(tmp_path)
    assert spark_calls[-1]["batch_size"] == 16 and spark_calls[-1]["max_pixels"] == 250_000_000
    monkeypatch.setenv("PICSEEK_BATCH_SIZE", "7")
    monkeypatch.setenv("PICSEEK_MAX_IMAGE_PIXELS", "1000")
    _index_on_spark(tmp_path)
    assert spark_calls[-1]["batch_size"] == 7 and spark_calls[-1]["max_pixels"] == 1000
    _index_on_spark(tmp_path, "--batch-size", "3")  # the option wins over the setting
    assert spark_calls[-1]["batch_size"] == 3


def test_spark_index_takes_the_config_file(spark_calls, tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text("batch_size = 5\n")
    monkeypatch.setenv("PICSEEK_CONFIG", str(tmp_path / "config.toml"))
    _index_on_spark(tmp_path)
    assert spark_calls[-1]["batch_size"] == 5


def test_spark_job_takes_the_batch_size_setting(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(spark, "index_on_spark", lambda *a, **kw: calls.append(kw) or spark.SparkReport("s", "m", "x"))
    monkeypatch.setattr(spark, "model_for_library", lambda lib, asked: "builtin")
    monkeypatch.setenv("PICSEEK_BATCH_SIZE", "9")
    spark_job.run(spark_job.parse_args([str(tmp_path), "--shards", str(tmp_path / "s")]))
    assert calls[-1]["batch_size"] == 9
    spark_job.run(spark_job.parse_args([str(tmp_path), "--shards", str(tmp_path / "s"), "--batch-size", "2"]))
    assert calls[-1]["batch_size"] == 2

"""The run configuration: flags, TOML, validation, saved copy."""
from __future__ import annotations

import pytest

from engine.config import RunConfig, build_parser, load_toml, parse_args


def test_defaults_are_valid_and_input_is_synthetic(tmp_path):
    cfg = parse_args(["--out", str(tmp_path / "o")])
    assert cfg.input_kind == "synthetic"
    assert cfg.k_values() == list(range(2, 9))
    assert cfg.fs == 100.0 and cfg.method == "lda-kmeans"


def test_every_field_has_a_documented_flag():
    text = build_parser().format_help()
    for name in RunConfig.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in text, name
    assert "(default: lda-kmeans)" in text and "(default: auto)" in text


def test_toml_then_flags_win(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('method = "ward"\nk = 4\nfs = 50\nbatch = 8\n')
    cfg = parse_args(["--config", str(toml), "--batch", "16"])
    assert cfg.method == "ward" and cfg.k_values() == [4]
    assert cfg.fs == 50.0 and isinstance(cfg.fs, float)
    assert cfg.batch == 16


def test_saved_config_round_trips(tmp_path):
    cfg = parse_args(["--method", "kmedoids", "--k", "3:5", "--no-report"])
    cfg.save(tmp_path / "config.toml")
    again = RunConfig(**load_toml(tmp_path / "config.toml"))
    assert again == cfg


@pytest.mark.parametrize("argv, message", [
    (["--k", "1"], "--k"),
    (["--k", "x"], "--k"),
    (["--lta", "0.5"], "--lta"),
    (["--trigger-off", "5"], "--trigger-off"),
    (["--fs", "-1"], "--fs"),
    (["--freqmin", "10", "--freqmax", "5"], "--freqmax"),
    (["--scheduler", "tcp://x:1", "--dask-local", "2"], "--scheduler"),
    (["--k-resample-size", "5"], "--k-resample-size must be an integer >= 10"),
])
def test_bad_values_name_the_flag(argv, message):
    with pytest.raises(ValueError, match=message):
        parse_args(argv)


def test_missing_paths_and_two_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        parse_args(["--events", str(tmp_path / "nope.h5")])
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="only one"):
        parse_args(["--events", str(tmp_path / "a"), "--images", str(tmp_path / "a")])


def test_bad_weights_and_times_are_caught_before_any_work(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(ValueError, match="--weights .*notes.txt.*MATLAB"):
        parse_args(["--weights", str(notes)])
    with pytest.raises(ValueError, match="--starttime: bad time 'yesterday'"):
        parse_args(["--starttime", "yesterday"])


def test_bad_toml_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("methd = 'kmeans'\n")
    with pytest.raises(ValueError, match="bad.toml.*methd"):
        parse_args(["--config", str(bad)])
    bad.write_text("method = [\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        parse_args(["--config", str(bad)])


def test_help_names_the_command_it_was_called_by_and_the_weight_formats(monkeypatch):
    from engine.config import build_parser

    monkeypatch.setattr("sys.argv", ["/venv/bin/microquake-run", "--help"])
    text = build_parser().format_help()
    assert text.startswith("usage: microquake-run")
    assert ".safetensors or .pt" in " ".join(text.split()) and "(.pt)" not in text
    monkeypatch.setattr("sys.argv", ["/x/engine/run.py"])
    assert build_parser().format_help().startswith("usage: python -m engine.run")

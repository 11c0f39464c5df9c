"""Configs and the command line: defaults, overrides, and the errors users see."""

from __future__ import annotations

import pytest

from nnparts import cli
from nnparts.train import config as configs
from nnparts.train.config import ConfigError


def test_defaults_validate_and_overrides_are_yaml_typed():
    cfg = configs.resolve(
        {"model": {"hidden": [64]}},
        configs.parse_overrides(
            [
                "--optimizer.lr",
                "0.01",
                "--model.hidden=[32,16]",
                "--train.early_stopping.patience",
                "2",
            ]
        ),
    )
    assert cfg["optimizer"]["lr"] == 0.01
    assert cfg["model"]["hidden"] == [32, 16]
    assert cfg["train"]["early_stopping"]["patience"] == 2
    assert cfg["model"]["name"] == "mlp"  # untouched defaults stay


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--model.activation", "relux"], r"model\.activation.*'relux'.*allowed:.*relu"),
        (["--optimizer.lr", "-0.1"], r"optimizer\.lr.*-0\.1.*> 0"),
        (["--optimizer.name", "adamm"], r"optimizer\.name.*'adamm'.*allowed.*adam"),
        (["--model.init", "glorot"], r"model\.init.*'glorot'.*allowed:.*xavier_normal"),
        (["--model.name", "vgg"], r"model\.name.*'vgg'.*allowed: mlp, cnn, resnet, densenet"),
        (["--model.dropout", "1.5"], r"model\.dropout.*1\.5"),
        (["--train.epochs", "0"], r"train\.epochs.*0.*positive integer"),
        (["--model.hidden", "[]"], r"model\.hidden.*non-empty list"),
        (["--data.dataset", "cifar"], r"data\.dataset.*'cifar'.*fashion-mnist"),
        (
            ["--optimizer.learning_rate", "0.1"],
            r"unknown config key 'optimizer\.learning_rate'.*lr",
        ),
        (["--data.augment", "[{name: spin}]"], r"data\.augment.*spin"),
    ],
)
def test_invalid_configs_name_key_value_and_allowed(override, message):
    with pytest.raises(ConfigError, match=message):
        configs.resolve(None, configs.parse_overrides(override))


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        configs.load_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        configs.load_file(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("model: mlp\n")
    with pytest.raises(ConfigError, match="'model' must be a mapping"):
        configs.resolve(configs.load_file(wrong))


def test_cli_reports_config_errors_with_exit_code_2(capsys, tmp_path):
    assert cli.main(["train", "--optimizer.lr", "-1"]) == 2
    assert "optimizer.lr" in capsys.readouterr().err
    assert cli.main(["train", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_dataset_not_available_offline(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = cli.main(
        [
            "train",
            "--data.dataset",
            "mnist",
            "--data.data_dir",
            str(empty),
            "--data.download",
            "false",
            "--quiet",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "mnist" in err.lower() and str(empty) in err


def test_show_config_prints_resolved_yaml(capsys):
    assert cli.main(["train", "--show-config", "--train.epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 3" in out and "name: mlp" in out


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert "nnparts" in capsys.readouterr().out
    assert cli.main([]) == 0
    assert "train" in capsys.readouterr().out


def test_every_recipe_is_a_valid_config():
    from pathlib import Path

    recipes = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml"))
    assert len(recipes) >= 4
    for path in recipes:
        data = configs.load_file(path)
        if path.name.startswith("search-"):  # a search config: training config + search/tune
            data.pop("search"), data.pop("tune", None)
        cfg = configs.resolve(data)
        assert cfg["train"]["epochs"] >= 1, path

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deftpipe.errors import ConfigError
from deftpipe.workspace.spec import default_spec, deep_merge, load_spec, parse_override


def _write(tmp_path: Path, spec: dict | str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    return p


def test_template_loads_and_interpolates(tmp_path: Path) -> None:
    spec = default_spec()
    spec["dataset"]["classify"]["images_dir"] = "elsewhere"
    loaded = load_spec(_write(tmp_path, spec))
    assert loaded["dataset"]["classify"]["train_dataset"]["images_dir"] == "elsewhere"


def test_dotted_overrides(tmp_path: Path) -> None:
    loaded = load_spec(_write(tmp_path, default_spec()), ["train.optim.lr=3e-4", "train.num_epochs=3",
                                                           "model.backbone.freeze_backbone=true"])
    assert loaded["train"]["optim"]["lr"] == pytest.approx(3e-4)
    assert loaded["train"]["num_epochs"] == 3
    assert loaded["model"]["backbone"]["freeze_backbone"] is True


def test_override_without_equals() -> None:
    with pytest.raises(ConfigError, match="has no '='"):
        parse_override("train.optim.lr")


def test_typo_suggests_closest_key(tmp_path: Path) -> None:
    spec = default_spec()
    spec["train"]["num_epoch"] = 3
    with pytest.raises(ConfigError, match="Did you mean 'train.num_epochs'"):
        load_spec(_write(tmp_path, spec))


def test_unknown_far_key_is_carried_through(tmp_path: Path) -> None:
    spec = default_spec()
    spec["train"]["tensorboard"] = {"enabled": True}
    assert load_spec(_write(tmp_path, spec))["train"]["tensorboard"] == {"enabled": True}


def test_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'train.num_epochs' must be int"):
        load_spec(_write(tmp_path, default_spec()), ["train.num_epochs=ten"])


def test_bad_choice_suggests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'adamw'"):
        load_spec(_write(tmp_path, default_spec()), ["train.optim.optim=admw"])


def test_backbone_registered_at_run_time_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deftpipe.backends.native import model

    monkeypatch.setitem(model._BACKBONES, "resnet_plugin", lambda c: model.create_backbone("resnet_tiny", c))
    path = _write(tmp_path, default_spec())
    assert load_spec(path, ["model.backbone.type=resnet_plugin"])["model"]["backbone"]["type"] == "resnet_plugin"
    with pytest.raises(ConfigError, match=r"choose one of .*resnet_plugin.*Did you mean 'resnet_plugin'"):
        load_spec(path, ["model.backbone.type=resnet_plugn"])


def test_checkpoint_interval_beyond_epochs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"checkpoint_interval \(5\) > train.num_epochs \(2\)"):
        load_spec(_write(tmp_path, default_spec()), ["train.num_epochs=2", "train.checkpoint_interval=5"])


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line \d+: YAML syntax error"):
        load_spec(_write(tmp_path, "train:\n  num_epochs: [1\n"))


def test_unresolvable_interpolation(tmp_path: Path) -> None:
    spec = default_spec()
    spec["dataset"]["classify"]["train_dataset"]["images_dir"] = "${dataset.classify.nope}"
    with pytest.raises(ConfigError, match="cannot resolve the spec"):
        load_spec(_write(tmp_path, spec))


def test_num_input_must_match_input_map(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="num_input is 3"):
        load_spec(_write(tmp_path, default_spec()), ["dataset.classify.num_input=3"])


def test_deep_merge_keeps_siblings() -> None:
    merged = deep_merge({"train": {"optim": {"lr": 1, "optim": "sgd"}}}, {"train": {"optim": {"lr": 2}}})
    assert merged == {"train": {"optim": {"lr": 2, "optim": "sgd"}}}

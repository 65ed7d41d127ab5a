"""Broken spec YAML: syntax, typo keys at any depth, wrong types, impossible intervals, interpolations, bombs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from deftpipe.errors import ConfigError
from deftpipe.workspace.spec import load_spec

from .conftest import assert_user_error, invoke, only_problem, write

SPEC = "specs/baseline_spec.yaml"


def _spec(ws: Path) -> dict:
    return yaml.safe_load((ws / SPEC).read_text())


def _with(ws: Path, dotted: str, value: object) -> None:
    spec = _spec(ws)
    node = spec
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    write(ws, SPEC, yaml.safe_dump(spec, sort_keys=False))


# (id, key, value, fragment of the one problem)
BAD_VALUES = [
    ("leaf_typo", "train.num_epoch", 3, "unknown key 'train.num_epoch'. Did you mean 'train.num_epochs'?"),
    ("section_typo", "train.optm", {"lr": 0.5}, "unknown key 'train.optm'. Did you mean 'train.optim'?"),
    ("top_level_typo", "trian", {"num_epochs": 3}, "unknown key 'trian'. Did you mean 'train'?"),
    ("case_typo", "dataset.classify.Image_Width", 32,
     "unknown key 'dataset.classify.Image_Width'. Did you mean 'dataset.classify.image_width'?"),
    ("string_for_int", "train.num_epochs", "ten", "'train.num_epochs' must be int, got 'ten' (str)."),
    ("bool_for_int", "dataset.classify.batch_size", True, "'dataset.classify.batch_size' must be int, got True"),
    ("float_for_int", "train.num_epochs", 2.5, "'train.num_epochs' must be int, got 2.5 (float)."),
    ("list_for_map", "dataset.classify.input_map", ["LightA", "LightB"], "'dataset.classify.input_map' must be dict"),
    ("section_is_a_list", "train", [1, 2], "'train' must be a section (a mapping of keys), got [1, 2] (list)."),
    ("nan_momentum", "train.optim.momentum", float("nan"), "'train.optim.momentum' must be a finite number, got nan."),
    ("inf_lr", "train.optim.lr", float("inf"), "'train.optim.lr' must be a finite number, got inf."),
    ("zero_epochs", "train.num_epochs", 0, "'train.num_epochs' must be at least 1, got 0."),
    ("bad_choice", "model.backbone.type", "resnet_tiyn", "choose one of ['resnet_tiny', 'resnet_small']. "
                                                         "Did you mean 'resnet_tiny'?"),
    ("checkpoint_interval_beyond_epochs", "train.checkpoint_interval", 50,
     "train.checkpoint_interval (50) > train.num_epochs (10): no checkpoint would ever be written; "
     "set checkpoint_interval to at most 10."),
    ("unresolvable_interpolation", "results_dir", "${dataset.classify.nope}",
     "cannot resolve the spec (Interpolation key 'dataset.classify.nope' not found); check every ${...}"),
    ("interpolation_cycle", "results_dir", "${train.seed_dir}", "cannot resolve the spec"),
    ("unknown_resolver", "results_dir", "${shell:rm -rf /}", "cannot resolve the spec (Unsupported interpolation "
                                                             "type shell)"),
    ("cls_weight_inf", "train.classify.cls_weight", [1.0, float("inf")],
     "'train.classify.cls_weight' must be two positive numbers [PASS, defect], got [1.0, inf]."),
]


@pytest.mark.parametrize(("key", "value", "fragment"), [b[1:] for b in BAD_VALUES], ids=[b[0] for b in BAD_VALUES])
def test_bad_spec_value(ws: Path, key: str, value: object, fragment: str) -> None:
    _with(ws, key, value)
    if key == "results_dir" and "seed_dir" in str(value):
        _with(ws, "train.seed_dir", "${results_dir}")
    msg = only_problem(ws)
    assert msg.startswith(f"{ws.resolve() / SPEC}: ") and fragment in msg
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_spec(ws / SPEC)


RAW = [
    ("unclosed_bracket", "train:\n  num_epochs: [1\n", r"line \d+: YAML syntax error"),
    ("tab_indentation", "train:\n\tnum_epochs: 3\n", r"line 2: YAML syntax error \(found character '\\t'"),
    ("bad_indent", "train:\n  num_epochs: 3\n lr: 1\n", r"line 3: YAML syntax error"),
    ("not_a_mapping", "- train\n- model\n", r"the spec must be a YAML mapping of sections, got list"),
    ("latin1", "results_dir: r\xe9sultats\n".encode("latin-1"), r"not UTF-8 text \(invalid continuation byte"),
    ("alias_bomb",
     "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
         f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi")),
     r"holds more than 20,000 values once YAML aliases \(\*name\) are expanded"),
    ("self_reference", "train: &t\n  inner: *t\n", r"nested more than 50 levels deep \(or an alias refers to itself\)"),
]


@pytest.mark.parametrize(("text", "pattern"), [r[1:] for r in RAW], ids=[r[0] for r in RAW])
def test_broken_spec_file(ws: Path, text: str | bytes, pattern: str) -> None:
    write(ws, SPEC, text)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_spec(ws / SPEC)
    assert "\n" not in info.value.message
    assert only_problem(ws) == info.value.message


def test_missing_spec(ws: Path) -> None:
    (ws / SPEC).unlink()
    assert only_problem(ws) == f"{ws.resolve() / SPEC}: spec file not found; run `deftpipe init` to create a template."


def test_unknown_keys_without_a_near_miss_are_carried_through(ws: Path) -> None:
    _with(ws, "train.tensorboard", {"enabled": True})
    _with(ws, "evaluate", {"checkpoint": "x.pth"})
    _with(ws, "dataset.classify.train_dataset.extra_flag", 1)
    spec = load_spec(ws / SPEC)
    assert spec["train"]["tensorboard"] == {"enabled": True} and spec["evaluate"] == {"checkpoint": "x.pth"}


@pytest.mark.parametrize(("override", "pattern"), [
    ("train.num_epochs.x=1", r"override 'train\.num_epochs\.x=1': cannot set 'train\.num_epochs\.x': "
                             r"'train\.num_epochs' is a value \(10\), not a section"),
    ("train.optm.lr=0.1", r"unknown key 'train\.optm'\. Did you mean 'train\.optim'\?"),
    ("train.num_epochs", r"override 'train\.num_epochs' has no '='"),
    ("=3", r"override '=3': '' is not a dotted key"),
    ("train.num_epochs=[1", r"override 'train\.num_epochs=\[1': value '\[1' is not valid YAML"),
    ("train.optim.lr=&a [*a]", r"nested more than 50 levels deep"),
])
def test_bad_override(ws: Path, override: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as info:
        load_spec(ws / SPEC, [override])
    assert "\n" not in info.value.message


def test_cli_spec_problem_exits_2(ws: Path, cli: object) -> None:
    code, _, err = invoke(cli, "validate-workspace", str(ws), "-o", "train.num_epochs.x=1")  # type: ignore[arg-type]
    assert_user_error(code, err, "error: override 'train.num_epochs.x=1': cannot set")
    write(ws, SPEC, "train:\n  num_epochs: [1\n")
    code, _, err = invoke(cli, "validate-workspace", str(ws))  # type: ignore[arg-type]
    assert_user_error(code, err, f"error: {ws.resolve() / SPEC} line 3: YAML syntax error")

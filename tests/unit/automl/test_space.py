from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from deftpipe.automl.space import (
    ParamSpec,
    SearchSpace,
    load_space_file,
    parse_param,
    parse_pin,
    resolve_space,
)
from deftpipe.errors import ConfigError
from deftpipe.workspace.spec import default_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_parse_every_kind_maps_to_its_distribution() -> None:
    assert parse_param("train.optim.lr=loguniform(1e-5,1e-2)").distribution() == FloatDistribution(1e-5, 1e-2, log=True)
    assert parse_param("a.b=uniform(0, 1)").distribution() == FloatDistribution(0.0, 1.0)
    assert parse_param("a.b=int(8,64)").distribution() == IntDistribution(8, 64)
    assert parse_param("a.b=choice(adamw,sgd)").distribution() == CategoricalDistribution(("adamw", "sgd"))
    assert parse_param("a.b=bool()").distribution() == CategoricalDistribution((False, True))


def test_default_space_samples_lr_on_a_log_scale() -> None:
    dist = SearchSpace.default().distributions()["train.optim.lr"]
    assert isinstance(dist, FloatDistribution) and dist.log


def test_lr_on_a_linear_scale_is_refused() -> None:
    with pytest.raises(ConfigError, match="log scale"):
        parse_param("train.optim.lr=uniform(1e-5,1e-2)")


@pytest.mark.parametrize(("text", "pattern"), [
    ("a.b=loguniorm(1,2)", "Did you mean 'loguniform'"),
    ("a.b=uniform(2,1)", "must be below"),
    ("a.b=loguniform(0,1)", "positive lower bound"),
    ("a.b=int(1.5,3)", "whole numbers"),
    ("a.b=bool(1)", "takes no arguments"),
    ("a.b=choice()", "at least one option"),
    ("a.b=choice(x,x)", "repeats"),
    ("a.b", "expected key=distribution"),
    ("a.b=3", "is not a distribution"),
])
def test_bad_expressions_name_the_fix(text: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        parse_param(text)


def test_unknown_key_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'train.optim.lr'"):
        resolve_space(default_spec(), params=["train.optim.lrr=loguniform(1e-5,1e-2)"])


def test_default_pins_come_from_the_spec_and_are_never_swept() -> None:
    space = resolve_space(default_spec())
    assert space.pins == {"train.num_epochs": 10, "dataset.classify.batch_size": 32}
    assert not set(space.keys) & set(space.pins)


def test_naming_a_pinned_key_sweeps_it() -> None:
    space = resolve_space(default_spec(), params=["dataset.classify.batch_size=choice(16,32)"])
    assert "dataset.classify.batch_size" in space.keys
    assert space.pins == {"train.num_epochs": 10}


def test_epochs_pins_the_budget_and_conflicts_are_refused() -> None:
    assert resolve_space(default_spec(), epochs=3).pins["train.num_epochs"] == 3
    with pytest.raises(ConfigError, match="both swept and pinned"):
        resolve_space(default_spec(), params=["train.optim.weight_decay=loguniform(1e-6,1e-2)"],
                      pins={"train.optim.weight_decay": 0.1})


def test_list_index_keys_set_one_element() -> None:
    space = resolve_space(default_spec(), params=["train.classify.cls_weight.1=uniform(1,20)"])
    spec = space.apply(default_spec(), {"train.classify.cls_weight.1": 7.5})
    assert spec["train"]["classify"]["cls_weight"] == [1.0, 7.5]
    with pytest.raises(ConfigError, match="outside its declared range"):
        space.apply(default_spec(), {"train.classify.cls_weight.1": 25.0})


def test_pin_values_parse_as_yaml() -> None:
    assert parse_pin("dataset.classify.batch_size=16") == ("dataset.classify.batch_size", 16)
    assert parse_pin("train.optim.lr=1e-4") == ("train.optim.lr", 1e-4)


def test_space_file_flat_and_sectioned(tmp_path: Path) -> None:
    flat = tmp_path / "flat.yaml"
    flat.write_text("train.optim.lr: loguniform(1e-5,1e-2)\nmodel.backbone.freeze_backbone: bool()\n")
    specs, pins = load_space_file(flat)
    assert [p.kind for p in specs] == ["loguniform", "bool"] and pins == {}
    sect = tmp_path / "sect.yaml"
    sect.write_text("params:\n  train.optim.momentum: {type: uniform, low: 0.8, high: 0.99}\n"
                    "pins:\n  dataset.classify.batch_size: 16\n")
    space = resolve_space(default_spec(), space_file=sect)
    assert space.keys == ("train.optim.momentum",)
    assert space.pins["dataset.classify.batch_size"] == 16


_bounds = st.tuples(st.floats(1e-6, 1e3), st.floats(1.001, 1e3)).map(lambda t: (t[0], t[0] * t[1]))
_specs = st.one_of(
    _bounds.map(lambda b: ParamSpec("x.lf", "loguniform", low=b[0], high=b[1])),
    _bounds.map(lambda b: ParamSpec("x.f", "uniform", low=-b[1], high=b[0])),
    st.tuples(st.integers(-50, 50), st.integers(1, 100)).map(lambda t: ParamSpec("x.i", "int", low=t[0], high=t[0] + t[1])),
    st.tuples(st.integers(1, 50), st.integers(1, 100)).map(lambda t: ParamSpec("x.li", "logint", low=t[0], high=t[0] + t[1])),
    st.just(ParamSpec("x.b", "bool")),
    st.lists(st.sampled_from(["a", "b", "c", 1, 2.5]), min_size=1, max_size=4, unique_by=repr).map(
        lambda c: ParamSpec("x.c", "choice", choices=tuple(c))),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=_specs, seed=st.integers(0, 2**31 - 1), algo=st.sampled_from(["random", "bayesian"]))
def test_sampled_and_grid_values_stay_in_range(spec: ParamSpec, seed: int, algo: str) -> None:
    from deftpipe.automl.study import make_sampler

    space = SearchSpace((spec,))
    study = optuna.create_study(sampler=make_sampler(algo, seed=seed, space=space, n_trials=6))
    for i in range(6):
        trial = study.ask(fixed_distributions=space.distributions())
        value = trial.params[spec.key]
        assert spec.contains(value), (spec, value)
        if spec.kind == "bool":
            assert value is True or value is False
        study.tell(trial, float(i))
    assert all(spec.contains(v) for v in spec.grid())


def test_lr_scale_shifts_only_learning_rate_ranges_and_keeps_them_log() -> None:
    space = SearchSpace.build(["train.optim.lr=loguniform(1e-5,1e-2)", "train.optim.weight_decay=loguniform(1e-6,1e-2)",
                               "model.head_lr=choice(0.001,0.01)"], pins={"train.num_epochs": 3})
    scaled = space.with_lr_scale(0.3)
    by_key = {p.key: p for p in scaled.params}
    assert by_key["train.optim.lr"].kind == "loguniform"
    assert by_key["train.optim.lr"].low == pytest.approx(3e-6) and by_key["train.optim.lr"].high == pytest.approx(3e-3)
    assert by_key["model.head_lr"].choices == pytest.approx((3e-4, 3e-3))
    assert by_key["train.optim.weight_decay"] == {p.key: p for p in space.params}["train.optim.weight_decay"]
    assert scaled.pins == {"train.num_epochs": 3}
    assert space.with_lr_scale(1.0) is space
    with pytest.raises(ConfigError, match="must be > 0"):
        space.with_lr_scale(0.0)

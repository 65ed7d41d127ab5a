"""Loading TAO-style specs: OmegaConf with `${...}` interpolation and dotted overrides.

`load_spec` returns a resolved plain dict and checks the keys the native backend
honours (types, ranges, near-miss typos); unknown keys are carried through.
"""
from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from deftpipe.errors import ConfigError

# key -> accepted python types (None allowed where listed). The native backend honours these.
HONOURED_KEYS: dict[str, tuple[type, ...]] = {
    "results_dir": (str, type(None)),
    "model.backbone.type": (str,),
    "model.backbone.freeze_backbone": (bool,),
    "model.classify.difference_module": (str,),
    "model.classify.input_mode": (str,),
    "model.classify.max_shift_px": (int,),
    "train.num_epochs": (int,),
    "train.checkpoint_interval": (int,),
    "train.validation_interval": (int,),
    "train.pretrained_model_path": (str, type(None)),
    "train.resume_training_checkpoint_path": (str, type(None)),
    "train.seed": (int,),
    "train.optim.lr": (float, int),
    "train.optim.optim": (str,),
    "train.optim.policy": (str,),
    "train.optim.momentum": (float, int),
    "train.optim.weight_decay": (float, int),
    "train.classify.loss": (str,),
    "train.classify.cls_weight": (list,),
    "dataset.classify.images_dir": (str,),
    "dataset.classify.image_ext": (str,),
    "dataset.classify.image_width": (int,),
    "dataset.classify.image_height": (int,),
    "dataset.classify.grayscale": (bool,),
    "dataset.classify.num_input": (int,),
    "dataset.classify.input_map": (dict,),
    "dataset.classify.batch_size": (int,),
    "dataset.classify.workers": (int,),
    "dataset.classify.num_classes": (int,),
    "dataset.classify.augmentation_config": (dict,),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "model.backbone.type": ("resnet_tiny", "resnet_small"),
    "model.classify.difference_module": ("learnable", "abs-diff"),
    "model.classify.input_mode": ("registered_diff", "raw"),
    "train.optim.optim": ("adamw", "adam", "sgd"),
    "train.optim.policy": ("cosine", "step", "constant"),
    "train.classify.loss": ("ce", "focal"),
}


def _choices(key: str) -> tuple[str, ...]:
    """Allowed values of `key`; backbones also include any registered at run time (e.g. a GPU backbone plug-in).

    Only called for a value outside the built-in list, so the common case never imports torch.
    """
    if key == "model.backbone.type":
        from deftpipe.backends.native.model import registered_backbones

        return tuple(dict.fromkeys((*CHOICES[key], *registered_backbones())))
    return CHOICES[key]


POSITIVE_INT_KEYS = (
    "train.num_epochs", "train.checkpoint_interval", "train.validation_interval",
    "dataset.classify.image_width", "dataset.classify.image_height", "dataset.classify.batch_size",
    "dataset.classify.num_input",
)
_SECTIONS = {k.rsplit(".", 1)[0] for k in HONOURED_KEYS if "." in k}
_SECTIONS |= {s.rsplit(".", 1)[0] for s in list(_SECTIONS) if "." in s}
# known child names per known section ("" = top level): the candidates a near-miss typo is compared with
_CHILDREN: dict[str, set[str]] = {}
for _name in set(HONOURED_KEYS) | _SECTIONS:
    _parent, _, _leaf = _name.rpartition(".")
    _CHILDREN.setdefault(_parent, set()).add(_leaf)
# `${oc.env:NAME}` may not copy a secret into the resolved spec (it is saved in run dirs and checkpoints).
_ENV_INTERPOLATION = re.compile(r"\$\{\s*oc\.env\s*:\s*([^,}\s]*)")
_SECRET_NAME = re.compile(r"(?i)key|token|secret|passw|credential|auth|cookie")


def template_text() -> str:
    """The spec template shipped with the package (used by `init` and the demo)."""
    return resources.files("deftpipe.workspace").joinpath("templates/baseline_spec.yaml").read_text()


def default_spec() -> dict[str, Any]:
    return yaml.safe_load(template_text())


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and dotted not in ("dataset.classify.input_map",
                                                         "dataset.classify.augmentation_config"):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def get(spec: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = spec
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def set_key(spec: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `dotted` in a nested dict, creating sections; raises ConfigError when a step is not a section."""
    node = spec
    parts = dotted.split(".")
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(
                f"cannot set '{dotted}': '{where}' is a value ({node!r}), not a section; "
                f"set '{where}' itself or fix the key."
            )
    node[parts[-1]] = value


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`extra` merged onto a copy of `base`; nested dicts merge, everything else is replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# A spec is a few hundred values; YAML aliases can make a 1 KB file expand to billions (OmegaConf expands them).
MAX_SPEC_VALUES = 20_000
MAX_SPEC_DEPTH = 50


def _check_tree(value: Any, *, where: str) -> None:
    """Reject self-referencing YAML (`&a [*a]`), absurd nesting and alias bombs before anything expands them."""
    budget = [MAX_SPEC_VALUES]

    def walk(node: Any, depth: int) -> None:
        if depth > MAX_SPEC_DEPTH:
            raise ConfigError(f"{where}: nested more than {MAX_SPEC_DEPTH} levels deep (or an alias refers to "
                              "itself); write the values out plainly.")
        budget[0] -= 1
        if budget[0] < 0:
            raise ConfigError(f"{where}: holds more than {MAX_SPEC_VALUES:,} values once YAML aliases (*name) are "
                              "expanded; a spec needs far fewer — remove the repeated aliases.")
        children = node.values() if isinstance(node, Mapping) else node if isinstance(node, list) else ()
        for child in children:
            walk(child, depth + 1)

    walk(value, 0)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _quoted(text: str) -> str:
    """'text' as typed, or its repr when it holds line breaks or other control characters (one-line messages)."""
    return f"'{text}'" if text.isprintable() else repr(text)


def parse_override(text: str) -> tuple[str, Any]:
    """`train.optim.lr=3e-4` -> ('train.optim.lr', 0.0003); values parse as YAML scalars."""
    shown = _quoted(text)
    if "=" not in text:
        raise ConfigError(f"override {shown} has no '='; write it as dotted.key=value, e.g. train.optim.lr=3e-4.")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {shown}: {_quoted(key)} is not a dotted key such as train.optim.lr.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {shown}: value {_quoted(raw)} is not valid YAML ({_one_line(exc)}).") from exc
    except RecursionError:
        raise ConfigError(f"override {shown}: value nested too deeply; write a plain value.") from None
    _check_tree(value, where=f"override {shown}")
    # YAML 1.1 reads '3e-4' as a string; numbers written that way are meant as floats.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in "eE.") else value
        except ValueError:
            pass
    return key, value


def _typo_check(flat: Mapping[str, Any], *, source: str) -> None:
    """Reject a key (or section) name one typo away from a known one, at any depth: `trian`, `train.optm.lr`."""
    for key in flat:
        parts = str(key).split(".")
        for depth in range(len(parts)):
            name = ".".join(parts[: depth + 1])
            if name in HONOURED_KEYS:
                break
            if name in _SECTIONS:
                continue
            parent = ".".join(parts[:depth])
            near = difflib.get_close_matches(parts[depth], _CHILDREN.get(parent, ()), n=1, cutoff=0.75)
            if near and near[0] != parts[depth]:
                suggestion = f"{parent + '.' if parent else ''}{near[0]}"
                raise ConfigError(
                    f"{source}: unknown key '{name}'. Did you mean '{suggestion}'? "
                    "Fix the spelling (keys are case-sensitive)."
                )
            break  # an unknown name that is no near miss is carried through, with everything below it


def validate_spec(spec: Mapping[str, Any], *, source: str = "spec") -> None:
    """Raise ConfigError for typos, wrong types, bad choices and an impossible checkpoint interval."""
    for section in sorted(_SECTIONS):
        node = get(spec, section)
        if node is not None and not isinstance(node, Mapping):
            raise ConfigError(
                f"{source}: '{section}' must be a section (a mapping of keys), got {node!r} ({type(node).__name__})."
            )
    flat = _flatten(spec)
    _typo_check(flat, source=source)
    missing = object()
    for key, types in HONOURED_KEYS.items():
        value = get(spec, key, missing)  # not `flat`: a mapping where a value belongs is flattened away
        if value is missing:
            continue
        if isinstance(value, bool) and bool not in types:
            ok = False
        else:
            ok = isinstance(value, types)
        if not ok:
            want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ConfigError(f"{source}: '{key}' must be {want}, got {value!r} ({type(value).__name__}).")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{source}: '{key}' must be a finite number, got {value!r}.")
        if key in CHOICES and value not in CHOICES[key] and value not in (choices := _choices(key)):
            near = difflib.get_close_matches(str(value), choices, n=1)
            tip = f" Did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"{source}: '{key}' is '{value}'; choose one of {list(choices)}.{tip}")
        if key in POSITIVE_INT_KEYS and value < 1:
            raise ConfigError(f"{source}: '{key}' must be at least 1, got {value}.")
        if key == "train.optim.lr" and not (0 < float(value) < 10):
            raise ConfigError(f"{source}: 'train.optim.lr' must be in (0, 10), got {value}.")
    epochs = get(spec, "train.num_epochs")
    interval = get(spec, "train.checkpoint_interval")
    if isinstance(epochs, int) and isinstance(interval, int) and interval > epochs:
        raise ConfigError(
            f"{source}: train.checkpoint_interval ({interval}) > train.num_epochs ({epochs}): no checkpoint "
            f"would ever be written; set checkpoint_interval to at most {epochs}."
        )
    input_map = get(spec, "dataset.classify.input_map")
    num_input = get(spec, "dataset.classify.num_input")
    if isinstance(input_map, Mapping):
        if not input_map:
            raise ConfigError(f"{source}: 'dataset.classify.input_map' is empty; name at least one light.")
        if isinstance(num_input, int) and num_input != len(input_map):
            raise ConfigError(
                f"{source}: dataset.classify.num_input is {num_input} but input_map names {len(input_map)} "
                f"light(s) {list(input_map)}; make them agree."
            )
    weights = get(spec, "train.classify.cls_weight")
    if isinstance(weights, list) and (len(weights) != 2 or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w > 0 for w in weights)):
        raise ConfigError(f"{source}: 'train.classify.cls_weight' must be two positive numbers [PASS, defect], got {weights}.")


def load_spec(path: Path | str, overrides: Iterable[str] = (), *, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a spec YAML, apply `extra` (deep-merged) then dotted `overrides`, resolve `${...}`, validate.

    Raises:
        ConfigError: syntax errors, unresolvable interpolations, typos, wrong types.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: spec file not found; run `deftpipe init` to create a template.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"{path}{where}: YAML syntax error ({_one_line(getattr(exc, 'problem', None) or exc)}); fix the file."
        ) from exc
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply for a spec; write the values out plainly.") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8.") from exc
    _check_tree(raw, where=str(path))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the spec must be a YAML mapping of sections, got {type(raw).__name__}.")
    return resolve_spec(raw, overrides, extra=extra, source=str(path))


def resolve_spec(raw: Mapping[str, Any], overrides: Iterable[str] = (), *, extra: Mapping[str, Any] | None = None,
                 source: str = "spec") -> dict[str, Any]:
    tree = deep_merge(raw, extra or {})
    for text in overrides:
        key, value = parse_override(text)
        try:
            set_key(tree, key, value)
        except ConfigError as exc:
            raise ConfigError(f"override {_quoted(text)}: {exc.message}") from exc
    _check_env_interpolations(tree, source=source)
    try:
        conf = OmegaConf.create(tree)
        resolved = OmegaConf.to_container(conf, resolve=True)
    except OmegaConfBaseException as exc:
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"{source}: cannot resolve the spec ({msg}); check every ${{...}} interpolation.") from exc
    assert isinstance(resolved, dict)
    validate_spec(resolved, source=source)
    return resolved  # type: ignore[return-value]


def _check_env_interpolations(tree: Any, *, source: str, where: str = "") -> None:
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            _check_env_interpolations(value, source=source, where=f"{where}.{key}" if where else str(key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            _check_env_interpolations(value, source=source, where=f"{where}[{i}]")
    elif isinstance(tree, str):
        for name in _ENV_INTERPOLATION.findall(tree):
            if not name or "$" in name or _SECRET_NAME.search(name):
                raise ConfigError(
                    f"{source}: '{where}' reads the environment variable {name or '?'!r} through ${{oc.env:...}}; "
                    "a spec may not copy credentials (it is saved in run directories and checkpoints). "
                    "Write the value itself, or pass credentials to the backend through the environment only."
                )


def dump_spec(spec: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(spec), sort_keys=False)


@dataclass(frozen=True)
class ImageSettings:
    """What the data side needs from a spec: lights, file extension, size, colour."""

    lights: tuple[str, ...]
    image_ext: str
    width: int
    height: int
    grayscale: bool

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ImageSettings:
        from deftpipe.workspace.paths import lights_from_input_map

        base = default_spec()
        def pick(key: str) -> Any:
            value = get(spec, key)
            return get(base, key) if value is None else value
        return cls(
            lights=lights_from_input_map(pick("dataset.classify.input_map")),
            image_ext=str(pick("dataset.classify.image_ext")),
            width=int(pick("dataset.classify.image_width")),
            height=int(pick("dataset.classify.image_height")),
            grayscale=bool(pick("dataset.classify.grayscale")),
        )

"""A folder of pairs for `deftpipe predict --pairs DIR`: file naming, discovery and a locator for the decoder.

Naming (flat folder, `<ext>` = the model's image_ext, e.g. `.png`):

    several lights:  <name>_test_<light><ext>   and  <name>_golden_<light><ext>   for every light
    one light:       <name>_test<ext>           and  <name>_golden<ext>   (or the `_<light>` form above)

Every image file of the folder must follow the rule; other files are ignored.
"""
from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from deftpipe.errors import ContractError
from deftpipe.workspace.paths import ImageLocator

ROLES: tuple[str, ...] = ("test", "golden")
_IMAGE_EXTS = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff"}


@dataclass(frozen=True)
class PairFiles:
    """Discovered pairs, sorted by name: `files[role][light_index][pair_index]` are absolute paths."""

    folder: Path
    names: tuple[str, ...]
    files: dict[str, tuple[tuple[str, ...], ...]]

    def rows(self) -> pd.DataFrame:
        """One output row per pair: `object_name`, `test_path`, `golden_path` (file names, `|` between lights)."""
        def joined(role: str) -> list[str]:
            per_light = self.files[role]
            return ["|".join(Path(per_light[k][i]).name for k in range(len(per_light))) for i in range(len(self.names))]

        return pd.DataFrame({"object_name": list(self.names), "test_path": joined("test"),
                             "golden_path": joined("golden")})


@dataclass(frozen=True)
class PairLocator(ImageLocator):
    """An `ImageLocator` over explicit pair files (rows are pair indices), so the backend's decoder reads them."""

    pairs: PairFiles | None = field(default=None)

    def frame_paths(self, rows: pd.DataFrame, *, csv_name: str = "CSV") -> tuple[list[list[str]], list[list[str]]]:
        if self.pairs is None:
            raise ValueError("PairLocator needs pairs")
        picks = [int(i) for i in rows.index]
        return ([[per_light[i] for i in picks] for per_light in self.pairs.files["test"]],
                [[per_light[i] for i in picks] for per_light in self.pairs.files["golden"]])


def expected_names(lights: Sequence[str], image_ext: str) -> str:
    if len(lights) == 1:
        return f"<name>_test{image_ext} and <name>_golden{image_ext}"
    return f"<name>_test_<light>{image_ext} and <name>_golden_<light>{image_ext} for each light in {list(lights)}"


def _parse(stem: str, lights: Sequence[str]) -> tuple[str, str, str | None] | None:
    """(name, role, light or None) of a file stem, or None when no rule fits."""
    for role in ROLES:
        for light in sorted(lights, key=len, reverse=True):
            suffix = f"_{role}_{light}"
            if stem.endswith(suffix) and len(stem) > len(suffix):
                return stem[:-len(suffix)], role, light
        if stem.endswith(f"_{role}") and len(stem) > len(role) + 1:
            return stem[:-len(role) - 1], role, None
    return None


def _unknown_light(stem: str, lights: Sequence[str]) -> str | None:
    for role in ROLES:
        marker = f"_{role}_"
        if marker in stem:
            light = stem.rsplit(marker, 1)[1]
            near = difflib.get_close_matches(light, list(lights), n=1)
            tip = f" Did you mean '{near[0]}'?" if near else ""
            return f"light '{light}' is not one of the model's lights {list(lights)}.{tip}"
    return None


def discover_pairs(folder: Path | str, *, lights: Sequence[str], image_ext: str) -> PairFiles:
    """Find every pair of `folder` for a model with `lights`.

    Raises:
        ContractError: no pairs, a file that breaks the naming rule, or a pair lacking a light or its golden.
    """
    root = Path(folder).expanduser().resolve()
    where = f"pairs folder '{root}'"
    if not root.is_dir():
        raise ContractError(f"{where} is not a folder; give the folder that holds {expected_names(lights, image_ext)}.")
    found: dict[tuple[str, str, str], Path] = {}
    other_ext: set[str] = set()
    single = len(lights) == 1
    for path in sorted(root.iterdir()):
        if not path.is_file():
            continue
        ext = path.suffix
        if ext != image_ext:
            if ext.lower() in _IMAGE_EXTS:
                other_ext.add(ext)
            continue
        parsed = _parse(path.stem, lights)
        if parsed is None or (parsed[2] is None and not single):
            why = _unknown_light(path.stem, lights) if parsed is None else (
                f"it names no light, but this model takes {len(lights)} lights {list(lights)}")
            raise ContractError(
                f"{where}: file '{path.name}' does not follow the pair naming"
                f"{': ' + why if why else ''}; name the files {expected_names(lights, image_ext)}."
            )
        name, role, light = parsed
        key = (name, role, light or lights[0])
        if key in found:
            raise ContractError(f"{where}: '{path.name}' and '{found[key].name}' are the same image of pair "
                                f"'{name}'; keep one of them.")
        found[key] = path
    names = sorted({k[0] for k in found})
    if not names:
        more = (f" (found {sorted(other_ext)} images; this model was trained on {image_ext} — convert them or check "
                "dataset.classify.image_ext)") if other_ext else ""
        raise ContractError(f"{where}: no pairs found{more}; name the files {expected_names(lights, image_ext)}.")
    problems = [f"pair '{n}' lacks {n}_{role}{'' if single else '_' + light}{image_ext}"
                for n in names for role in ROLES for light in lights if (n, role, light) not in found]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ContractError(
            f"{where}: {'; '.join(problems[:3])}{more}. Every pair needs {expected_names(lights, image_ext)}; "
            "add the missing files or remove the incomplete pairs."
        )
    files = {role: tuple(tuple(str(found[(n, role, light)]) for n in names) for light in lights) for role in ROLES}
    return PairFiles(root, tuple(names), files)


def pair_locator(pairs: PairFiles, *, lights: Sequence[str], image_ext: str) -> PairLocator:
    return PairLocator(pairs.folder, pairs.folder, tuple(lights), image_ext, pairs)

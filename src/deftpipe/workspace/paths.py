"""The image path rule of SPEC §2 and root confinement.

`{images_dir}/{input_path}/{object_name}_{light}{image_ext}` for every light;
every resolved path must stay inside the workspace (no `..`, no foreign absolute
paths, no symlink escapes).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from deftpipe.errors import ContractError


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_relative_component(value: str, *, column: str, where: str) -> None:
    """Reject a CSV path value that is absolute or climbs with `..`."""
    if value.startswith(("/", "\\")) or (len(value) > 1 and value[1] == ":"):
        raise ContractError(
            f"{where}: {column} '{value}' is an absolute path; "
            "write it relative to the images folder of the workspace."
        )
    parts = value.replace("\\", "/").split("/")
    if ".." in parts:
        raise ContractError(
            f"{where}: {column} '{value}' contains '..' and would leave the image root; "
            "write a path inside the workspace."
        )


@dataclass(frozen=True)
class ImageLocator:
    """Resolves the test and golden image files of CSV rows, confined to `workspace_root`.

    Example:
        loc = ImageLocator(ws.images_dir, ws.root, ("LightA", "LightB"), ".png")
        test_paths, golden_paths = loc.row_paths("C1@1", "boards/b1", "golden/b1")
    """

    images_dir: Path
    workspace_root: Path
    lights: tuple[str, ...]
    image_ext: str

    def __post_init__(self) -> None:
        root = os.path.realpath(self.workspace_root)
        images = os.path.realpath(self.images_dir)
        if not _inside(images, root):
            raise ContractError(
                f"images_dir '{self.images_dir}' resolves to '{images}', outside the workspace '{root}'; "
                "keep images inside the workspace."
            )
        object.__setattr__(self, "workspace_root", Path(root))
        object.__setattr__(self, "images_dir", Path(images))

    def file(self, folder: str, object_name: str, light: str) -> Path:
        return self.images_dir / folder / f"{object_name}_{light}{self.image_ext}"

    def row_paths(self, object_name: str, input_path: str, golden_path: str) -> tuple[list[Path], list[Path]]:
        tests = [self.file(input_path, object_name, light) for light in self.lights]
        goldens = [self.file(golden_path, object_name, light) for light in self.lights]
        return tests, goldens

    def frame_paths(self, rows: pd.DataFrame, *, csv_name: str = "CSV") -> tuple[list[list[str]], list[list[str]]]:
        """Absolute test and golden file paths per row and light; raises on any escaping path.

        Cheap on big tables: confinement is checked per unique folder, not per file;
        a file that is itself a symlink is checked when the files are stat-ed (`find_missing`).
        """
        self.check_folders(rows, csv_name=csv_name)
        base = str(self.images_dir)
        tests: list[list[str]] = []
        goldens: list[list[str]] = []
        for light in self.lights:
            suffix = f"_{light}{self.image_ext}"
            tests.append((base + "/" + rows["input_path"] + "/" + rows["object_name"] + suffix).tolist())
            goldens.append((base + "/" + rows["golden_path"] + "/" + rows["object_name"] + suffix).tolist())
        return tests, goldens

    def check_folders(self, rows: pd.DataFrame, *, csv_name: str = "CSV") -> None:
        root = str(self.workspace_root)
        for column in ("input_path", "golden_path"):
            for value, first_index in rows.groupby(column, sort=False).groups.items():
                where = f"{csv_name} line {int(first_index[0]) + 2}"
                check_relative_component(str(value), column=column, where=where)
                real = os.path.realpath(self.images_dir / str(value))
                if not _inside(real, root):
                    raise ContractError(
                        f"{where}: {column} '{value}' resolves to '{real}' (through a symlink), outside the "
                        f"workspace '{root}'; copy the images into the workspace instead of linking."
                    )
        names = rows["object_name"].astype(str)
        bad = (names.str.contains("/", regex=False) | names.str.contains("\\", regex=False)
               | names.isin(["", ".", ".."])).to_numpy()
        if bad.any():  # vectorized: a million-row CSV must not cost a Python call per row
            first_index = rows.index[int(bad.argmax())]
            raise ContractError(
                f"{csv_name} line {int(first_index) + 2}: object_name '{names.loc[first_index]}' must be a plain "
                "file stem without folders; put the folder in input_path / golden_path."
            )

    def check_file_confined(self, path: str, *, where: str) -> None:
        real = os.path.realpath(path)
        if not _inside(real, str(self.workspace_root)):
            raise ContractError(
                f"{where}: image '{path}' is a symlink to '{real}', outside the workspace; "
                "copy the file into the workspace."
            )


def lights_from_input_map(input_map: dict[str, int] | Sequence[str]) -> tuple[str, ...]:
    """Lights ordered by their input_map index (the channel order of the model input)."""
    if isinstance(input_map, dict):
        return tuple(k for k, _ in sorted(input_map.items(), key=lambda kv: (int(kv[1]), kv[0])))
    return tuple(input_map)

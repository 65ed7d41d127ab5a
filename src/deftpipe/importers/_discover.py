"""Finding DeepPCB pairs on disk: `group<G>/<id>/<id><NNN>_{test,temp}.jpg` + `group<G>/<id>_not/<id><NNN>.txt`.

Groups are discovered by walking the folder, so a partial copy, the full
repository (with trainval.txt/test.txt beside) or a single group folder all work.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deftpipe.errors import ConfigError, ContractError

TEST_SUFFIX = "_test.jpg"
TEMPLATE_SUFFIX = "_temp.jpg"


@dataclass(frozen=True)
class DeepPcbPair:
    """One inspected board image, its template (golden) and its annotation file."""

    image_id: str
    group: str
    test_path: Path
    template_path: Path
    boxes_path: Path


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def _group_name(image_dir: Path) -> str:
    parent = image_dir.parent
    return parent.name if parent.name.lower().startswith("group") else image_dir.name


def discover_pairs(src: Path) -> tuple[list[DeepPcbPair], list[Skipped]]:
    """Every complete pair under `src`, sorted by image id, plus the incomplete ones and why they were skipped."""
    if not src.exists():
        raise ConfigError(
            f"source '{src}' not found; point SRC at the DeepPCB 'PCBData' folder "
            "(group<G>/<id>/<id><NNN>_test.jpg with annotations in group<G>/<id>_not/)."
        )
    if not src.is_dir():
        raise ConfigError(f"source '{src}' is a file; point SRC at the DeepPCB 'PCBData' folder.")
    pairs: dict[str, DeepPcbPair] = {}
    skipped: list[Skipped] = []
    for test_path in sorted(src.rglob(f"*{TEST_SUFFIX}")):
        if not test_path.is_file():
            continue
        image_id = test_path.name[: -len(TEST_SUFFIX)]
        image_dir = test_path.parent
        template = image_dir / f"{image_id}{TEMPLATE_SUFFIX}"
        boxes = image_dir.parent / f"{image_dir.name}_not" / f"{image_id}.txt"
        if not template.is_file():
            skipped.append(Skipped(str(test_path), f"no template image {template.name} beside it"))
            continue
        if not boxes.is_file():
            # an unannotated image is not known to be defect-free, so it is not imported as PASS
            skipped.append(Skipped(str(test_path), f"no annotation file {boxes}"))
            continue
        if image_id in pairs:
            raise ContractError(
                f"image id '{image_id}' occurs twice: {pairs[image_id].test_path} and {test_path}; image ids must "
                "be unique across groups. Remove the duplicate copy from the source folder."
            )
        pairs[image_id] = DeepPcbPair(image_id, _group_name(image_dir), test_path, template, boxes)
    if not pairs:
        why = f" ({len(skipped)} incomplete: first {skipped[0].path}: {skipped[0].reason})" if skipped else ""
        raise ConfigError(
            f"source '{src}': no DeepPCB pairs found{why}; expected group<G>/<id>/<id><NNN>_test.jpg with "
            "<id><NNN>_temp.jpg beside it and group<G>/<id>_not/<id><NNN>.txt."
        )
    return [pairs[k] for k in sorted(pairs)], skipped

"""Write a complete synthetic demo workspace (SPEC §2) for a scale and a seed.

The folder gets images, the spec, the five sample CSVs, an empty `results/`,
a README and the `.deftpipe_demo.json` marker. The marker is written before the
first image, so an interrupted generation can be replaced with `force=True`;
only a folder carrying it is ever deleted.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from deftpipe.demo._plan import RenderJob, render_jobs, run_jobs, split_table
from deftpipe.demo.catalog import GAP_LABELS, IMAGE_EXT, LIGHTS, SPLITS, resolve_scale
from deftpipe.errors import ConfigError
from deftpipe.workspace.io import write_csv_atomic, write_json_atomic, write_text_atomic
from deftpipe.workspace.layout import IMAGES_REL, PASS_LABEL, RESULTS_REL, SPEC_REL
from deftpipe.workspace.spec import template_text

MARKER_NAME = ".deftpipe_demo.json"
MARKER_FORMAT = "deftpipe-demo/1"
README_NAME = "README.txt"
# Everything make-demo-data writes besides `results/` (which may hold the user's runs and is kept).
GENERATED: tuple[Path, ...] = (IMAGES_REL, SPEC_REL, *(plan.csv_rel for plan in SPLITS), Path(README_NAME),
                               Path(MARKER_NAME))
# Below this many pairs the start-up of worker processes costs more than it saves.
_MIN_PAIRS_PER_WORKER = 600
_CHUNK = 64


@dataclass(frozen=True)
class DemoSummary:
    """What make_demo_workspace wrote; `label_counts[split][label]` are row counts."""

    ws_root: Path
    scale: str
    seed: int
    image_size: int
    label_counts: Mapping[str, Mapping[str, int]]
    gap_labels: tuple[str, ...]
    n_workers: int
    seconds: float

    def n_rows(self, split: str) -> int:
        return sum(self.label_counts[split].values())

    def defect_share(self, split: str) -> float:
        n = self.n_rows(split)
        return (n - self.label_counts[split].get(PASS_LABEL, 0)) / n if n else 0.0

    def one_line(self) -> str:
        sizes = " / ".join(f"{split} {self.n_rows(split)}" for split in self.label_counts)
        shares = "/".join(f"{100 * self.defect_share(split):.0f}" for split in self.label_counts)
        gaps = ", ".join(
            f"{label} (train {self.label_counts['train'].get(label, 0)}, kpi {self.label_counts['kpi'].get(label, 0)}"
            f", pool {self.label_counts['pool'].get(label, 0)})" for label in self.gap_labels
        )
        return (f"Demo workspace {self.ws_root} ({self.scale}, seed {self.seed}, {self.image_size} px, "
                f"{'+'.join(LIGHTS)}): pairs {sizes}; defects {shares} %; planted gaps {gaps}; "
                f"{self.seconds:.1f} s")


def make_demo_workspace(ws_root: Path, *, scale: str = "small", seed: int = 0, force: bool = False,
                        workers: int | None = None) -> DemoSummary:
    """Generate the synthetic AOI demo workspace at `ws_root`.

    Args:
        scale: tiny | small | medium | large (see `catalog.SCALES`).
        seed: same seed -> byte-identical CSVs and images.
        force: replace an existing demo workspace (one carrying the marker); other folders are never deleted.
        workers: processes for rendering; None picks by size and CPU count. The output does not depend on it.

    Raises:
        ConfigError: unknown scale, negative seed, a non-empty target without `force`, or a target that is
            not a demo workspace.
    """
    started = time.perf_counter()
    cfg = resolve_scale(scale)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed!r}.")
    root = Path(ws_root).expanduser().resolve()
    _prepare_target(root, force=force)
    _write_marker(root, {"format": MARKER_FORMAT, "status": "in_progress", "scale": cfg.name, "seed": seed})
    write_text_atomic(root / SPEC_REL, spec_text(cfg.image_size, num_epochs=cfg.num_epochs))
    write_text_atomic(root / README_NAME, _readme(cfg.name, seed, cfg.image_size, cfg.num_epochs))
    (root / RESULTS_REL).mkdir(parents=True, exist_ok=True)

    tables = {plan.name: split_table(cfg, plan, seed) for plan in SPLITS}
    jobs: list[RenderJob] = []
    for plan in SPLITS:
        jobs += render_jobs(tables[plan.name], images_dir=root / IMAGES_REL, size=cfg.image_size, seed=seed,
                            split_id=plan.split_id)
    n_workers = _pick_workers(len(jobs), workers)
    _render_all(jobs, n_workers)
    for plan in SPLITS:
        write_csv_atomic(root / plan.csv_rel, tables[plan.name])

    counts = {name: {str(k): int(v) for k, v in frame["label"].value_counts().sort_index().items()}
              for name, frame in tables.items()}
    _write_marker(root, {
        "format": MARKER_FORMAT, "status": "complete", "scale": cfg.name, "seed": seed,
        "image_size": cfg.image_size, "lights": list(LIGHTS), "image_ext": IMAGE_EXT,
        "label_counts": counts, "gap_labels": list(GAP_LABELS),
        "generated": [p.as_posix() for p in GENERATED], "kept": [RESULTS_REL.as_posix()],
    })
    return DemoSummary(root, cfg.name, seed, cfg.image_size, MappingProxyType(counts), GAP_LABELS, n_workers,
                       time.perf_counter() - started)


def spec_text(image_size: int, *, num_epochs: int | None = None) -> str:
    """The shipped spec template with image_width/height (and train.num_epochs if given) set; comments kept."""
    text = template_text()
    values = {"image_width": image_size, "image_height": image_size}
    if num_epochs is not None:
        values["num_epochs"] = num_epochs
    for key, value in values.items():
        text, n = re.subn(rf"^(\s*{key}:\s*)\d+", rf"\g<1>{value}", text, count=1, flags=re.MULTILINE)
        if n != 1:
            raise RuntimeError(f"spec template has no '{key}:' line to set; the template and the demo disagree")
    parsed = yaml.safe_load(text)
    cls = parsed["dataset"]["classify"]
    if (cls["image_width"], cls["image_height"]) != (image_size, image_size) or (
            num_epochs is not None and parsed["train"]["num_epochs"] != num_epochs):
        raise RuntimeError("spec template edit did not set the image size / epochs; the template layout changed")
    return text


def _prepare_target(root: Path, *, force: bool) -> None:
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: exists and is a file; give make-demo-data a folder path.")
    if not root.exists() or not any(root.iterdir()):
        root.mkdir(parents=True, exist_ok=True)
        return
    marker = _read_marker(root)
    if not force:
        what = "a demo workspace" if marker is not None else f"not a demo workspace (no {MARKER_NAME})"
        raise ConfigError(
            f"{root}: folder is not empty ({what}); pass --force to replace a demo workspace, "
            "or choose a new or empty folder."
        )
    if marker is None:
        raise ConfigError(
            f"{root}: refusing to delete a non-empty folder without the {MARKER_NAME} marker (make-demo-data "
            "did not create it); choose a new or empty folder, or empty this one yourself."
        )
    _remove_generated(root)


def _read_marker(root: Path) -> dict[str, Any] | None:
    path = root / MARKER_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MARKER_FORMAT else None


def _write_marker(root: Path, payload: dict[str, Any]) -> None:
    write_json_atomic(root / MARKER_NAME, payload)


def _remove_generated(root: Path) -> None:
    for rel in GENERATED:
        if rel == Path(MARKER_NAME):
            continue
        path = root / rel
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    for plan in SPLITS:  # folders the CSVs lived in, when nothing else is left in them
        for parent in plan.csv_rel.parents:
            if parent != Path(".") and (root / parent).is_dir() and not any((root / parent).iterdir()):
                (root / parent).rmdir()
    (root / MARKER_NAME).unlink()


def _pick_workers(n_jobs: int, workers: int | None) -> int:
    if workers is not None:
        if workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}.")
        return workers
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, 8, n_jobs // _MIN_PAIRS_PER_WORKER))


def _render_all(jobs: list[RenderJob], n_workers: int) -> None:
    if n_workers <= 1:
        run_jobs(jobs)
        return
    chunks = [jobs[i:i + _CHUNK] for i in range(0, len(jobs), _CHUNK)]
    # forkserver/spawn: workers never inherit the parent's thread pools (torch, OpenCV).
    method = "forkserver" if os.name == "posix" else "spawn"
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=get_context(method)) as pool:
        done = sum(pool.map(run_jobs, chunks))
    if done != len(jobs):
        raise RuntimeError(f"rendered {done} of {len(jobs)} rows")


def _readme(scale: str, seed: int, size: int, num_epochs: int | None = None) -> str:
    schedule = "" if num_epochs is None else (
        f"\nspecs/baseline_spec.yaml trains {num_epochs} epochs per training (train.num_epochs), short\n"
        "enough for `make demo` to finish in minutes on a laptop CPU; raise it for stronger models.\n")
    return f"""deftpipe synthetic AOI demo workspace (scale {scale}, seed {seed}, {size}x{size} px)

Generated by `deftpipe make-demo-data`; regenerate with
    deftpipe make-demo-data <this folder> --scale {scale} --seed {seed} --force
(--force deletes only what it generated; results/ is kept).

Each sample is a PCB component crop (chip resistor, capacitor, SOT, IC) seen as a
golden reference and a test capture, in two grey lights: LightA (diffuse top
light: flat metal bright, solder slopes dark) and LightB (low-angle light: solder
slopes and edges bright). Test captures carry camera nuisance (sub-pixel to 2 px
misalignment, gain/offset/gradient, blur, noise) and acceptable process variation
(placement within 1.5 px, fillet shape, body colour, marking lot, glare) that a
plain difference scorer tends to flag.

Labels: PASS, missing, shift, tombstone, bridge, excess_solder,
insufficient_solder, foreign_material, scratch.
Planted gaps: {', '.join(GAP_LABELS)} are absent or rare (<= 1 %) in
train/base/*.csv but present in kpi/*.csv and the mining pool.

Files: images/<split>/<board>/{{test,golden}}/<object_name>_<light>{IMAGE_EXT}
CSV columns: input_path, golden_path, label, object_name, boardname, component_kind
{schedule}"""


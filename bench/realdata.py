"""Real-data benchmark (SPEC §8): the three phases, Phase 1 alone and the zero-shot scorer on DeepPCB crops.

Imports DeepPCB with the product's importer (`deftpipe import deeppcb`) into WORKDIR/ws, then runs
cells, each in its own subprocess so its peak RSS (the child's high-water mark from `os.wait4`) is its
own. Cell order: {all3, phase1, zeroshot} x seeds, then with `--ablation` the remaining rows of
bench/ablation.py (phase2, phase12, all3_cold; its cell code is imported, not copied). Every model is
scored by this script on the KPI and holdout sets. Resumable per cell: a finished cell is
WORKDIR/cells/<arm>_s<seed>.json (written atomically) and is never recomputed; a crashed cell writes
nothing and reruns next time (an ablation arm resumes its run directory). Prints and writes one table
(WORKDIR/realdata.md + .json): medians over seeds.

    python bench/realdata.py --quick --seeds 1           # smoke: 40 pairs, <=150 rows per split, 2 epochs
    python bench/realdata.py --seeds 3 [--ablation]      # full size: every pair, importer default caps
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_DATA = BENCH_DIR.parents[1] / "shared" / "data" / "deeppcb"
MAIN_ARMS = ("all3", "phase1", "zeroshot")
ABLATION_ARMS = ("phase2", "phase12", "all3_cold")
# --quick: a cell takes minutes on a loaded 2-core CPU; 40 pairs still span all four DeepPCB groups
QUICK = {"max_pairs": 40, "max_per_split": 150, "max_iterations": 1, "recommendations": 2, "epochs": 2}
METRICS = ("kpi_far100", "kpi_far99", "kpi_auroc", "holdout_far100", "holdout_far99", "holdout_auroc")
PHASES = ("automl_phase1", "deft", "final_automl")


# --- workspace ---------------------------------------------------------------------------------------------------


def _pcbdata(data: Path) -> Path | None:
    """The `PCBData` folder inside --data (or --data itself), None when absent."""
    for cand in (data / "PCBData", data):
        if any(cand.glob("group*")):
            return cand
    return None


def _import_params(args: argparse.Namespace) -> dict[str, Any]:
    # one import (seed 0) for every cell: seeds vary the training, never the split, so cells compare
    return {"crop": args.crop, "mode": args.mode, "stride": args.stride, "max_pairs": args.max_pairs,
            "max_per_split": args.max_per_split, "seed": 0}


def ensure_workspace(args: argparse.Namespace, src: Path) -> tuple[Path, float | None]:
    """Import once per parameter set via the CLI (the product path); returns (workspace, import seconds or None)."""
    ws = args.workdir / "ws"
    stamp = args.workdir / "import_params.json"
    params = _import_params(args)
    if stamp.exists() and json.loads(stamp.read_text()) == params and (ws / "import_summary.json").exists():
        return ws, None
    if any(args.workdir.joinpath("cells").glob("*.json")):
        raise SystemExit(f"{args.workdir} holds cells of another import ({stamp.read_text() if stamp.exists() else '?'}"
                         f"); pass a fresh --workdir for {params}.")
    cmd = [str(Path(sys.executable).with_name("deftpipe")), "import", "deeppcb", str(src), str(ws),
           "--crop", str(args.crop), "--mode", args.mode, "--seed", "0", "--force"]
    if args.stride:
        cmd += ["--stride", str(args.stride)]
    if args.max_pairs:
        cmd += ["--max-pairs", str(args.max_pairs)]
    if args.max_per_split:
        cmd += ["--max-per-split", str(args.max_per_split)]
    print("[realdata] " + " ".join(cmd), file=sys.stderr, flush=True)
    started = time.monotonic()
    subprocess.run(cmd, check=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    _write_json(stamp, params)
    return ws, time.monotonic() - started


# --- one cell (child process) --------------------------------------------------------------------------------------


def _metrics(csv: Path) -> dict[str, float]:
    from deftpipe.metrics.evaluators import read_inference_csv
    from deftpipe.metrics.far import auroc, far_at_recall

    _, scores, is_defect = read_inference_csv(csv)
    return {"far100": far_at_recall(scores, is_defect).far_pct,
            "far99": far_at_recall(scores, is_defect, recall_pct=99.0).far_pct, "auroc": auroc(scores, is_defect)}


def _flat(split: str, m: dict[str, float] | None) -> dict[str, float | None]:
    return {f"{split}_{k}": (m or {}).get(k) for k in ("far100", "far99", "auroc")}


def _zeroshot_cell(ws_root: Path, cell_dir: Path) -> dict[str, Any]:
    """The shipped registered, 1 px-tolerant zero-shot scorer on KPI and holdout (no training)."""
    from deftpipe.metrics.zeroshot import score_csv_zero_shot
    from deftpipe.workspace.layout import Workspace
    from deftpipe.workspace.spec import load_spec

    ws = Workspace.at(ws_root)
    spec = load_spec(ws.spec_path, [])
    started = time.monotonic()
    row: dict[str, Any] = {}
    for split, csv in (("kpi", ws.kpi_csv), ("holdout", ws.holdout_csv)):
        out = score_csv_zero_shot(csv, images_dir=ws.images_dir, workspace_root=ws.root, spec=spec,
                                  out_csv=cell_dir / f"zero_shot_{split}.csv") if csv.exists() else None
        row.update(_flat(split, _metrics(out) if out else None))
    return {**row, "wall_s": round(time.monotonic() - started, 1), "phase_s": {}}


def _ablation_args(args: argparse.Namespace) -> argparse.Namespace:
    """The namespace bench/ablation.py's cell functions read."""
    return argparse.Namespace(out=args.workdir / "ablation", recommendations=args.recommendations,
                              algorithm=args.algorithm, epochs=args.epochs, noise_rerun=args.noise_rerun == "on",
                              backend=args.backend, device=args.device, max_iterations=args.max_iterations,
                              kpi_target=args.kpi_target)


def _model_cell(args: argparse.Namespace, ws: Path, arm: str, seed: int) -> dict[str, Any]:
    """One ablation arm through bench/ablation.py, plus KPI FAR@99 / AUROC from the CSV its scoring wrote."""
    sys.path.insert(0, str(BENCH_DIR))
    import ablation

    from deftpipe.ui import events

    phase_s: dict[str, float] = {}

    def on_event(ev: dict[str, Any]) -> None:
        if ev.get("event") == "phase_end" and ev.get("phase"):
            phase_s[ev["phase"]] = phase_s.get(ev["phase"], 0.0) + float(ev.get("duration_sec") or 0.0)

    ab = _ablation_args(args)
    with events.listen(on_event):
        row = ablation._run_cell(ab, ws, arm, seed, ab.out / "cells")
    if row.get("error"):
        return {"error": row["error"], **_flat("kpi", None), **_flat("holdout", None), "wall_s": None, "phase_s": {}}
    kpi_csv = ab.out / "work" / f"{arm}_s{seed}" / "bench_eval" / "kpi.csv"
    kpi = _metrics(kpi_csv) if kpi_csv.exists() else {"far100": row["kpi_far100"]}
    if arm == "phase1":  # run_automl alone publishes no phase events: the whole cell is Phase 1
        phase_s = {"automl_phase1": float(row["wall_s"])}
    elif arm == "phase2":
        phase_s = {"deft": float(row["wall_s"])}
    elif arm == "phase12":  # Phases 1 and 2 of the all3 run it is read from
        all3 = args.workdir / "cells" / f"all3_s{seed}.json"
        src = json.loads(all3.read_text()).get("phase_s", {}) if all3.exists() else {}
        phase_s = {p: v for p, v in src.items() if p != "final_automl"}
    return {**_flat("kpi", kpi), **{k: row.get(k) for k in METRICS if k.startswith("holdout")},
            "wall_s": row["wall_s"], "phase_s": phase_s, "resumed": row.get("resumed", False),
            "results_dir": row.get("results_dir"), "deliverable": row.get("iteration")}


def run_child(args: argparse.Namespace) -> int:
    """Body of one cell's subprocess: writes its row to --child-out."""
    arm, seed = args.child_arm, args.child_seed
    ws = args.workdir / "ws"
    cell_dir = args.workdir / "work" / f"{arm}_s{seed}"
    cell_dir.mkdir(parents=True, exist_ok=True)
    row = _zeroshot_cell(ws, cell_dir) if arm == "zeroshot" else _model_cell(args, ws, arm, seed)
    _write_json(Path(args.child_out), row)
    return 0


# --- cells (parent) --------------------------------------------------------------------------------------------------


def _write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    os.replace(tmp, path)


def _child_argv(argv: list[str], arm: str, seed: int, out: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *argv, "--child-arm", arm, "--child-seed", str(seed),
            "--child-out", str(out)]


def run_cell(args: argparse.Namespace, argv: list[str], arm: str, seed: int) -> dict[str, Any] | None:
    """Run (or read) one cell; None when the child crashed (nothing saved, so a rerun retries it)."""
    done = args.workdir / "cells" / f"{arm}_s{seed}.json"
    if done.exists():
        return json.loads(done.read_text())
    out = args.workdir / "work" / f"{arm}_s{seed}" / "child_row.json"
    out.unlink(missing_ok=True)
    started = time.monotonic()
    proc = subprocess.Popen(_child_argv(argv, arm, seed, out))
    # wait4 gives this child's own rusage: ru_maxrss is its RSS high-water mark (KiB on Linux), covering
    # its waited-for descendants too, unaffected by earlier cells (RUSAGE_CHILDREN would be a running max)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    cell_s = time.monotonic() - started
    if proc.returncode != 0 or not out.exists():
        print(f"[realdata] {arm} seed {seed}: child exited {proc.returncode}; not saved (rerun retries it)",
              file=sys.stderr, flush=True)
        return None
    row = {"arm": arm, "seed": seed, **json.loads(out.read_text()), "cell_s": round(cell_s, 1),
           "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}
    if arm == "phase12":  # read from the all3 run; its process only scored a checkpoint
        row["peak_rss_note"] = "scoring only; the training ran in all3"
    _write_json(done, row)
    print(f"[realdata] {arm} seed {seed}: KPI FAR@100 {_fmt(row.get('kpi_far100'))} · holdout FAR@100 "
          f"{_fmt(row.get('holdout_far100'))} · cell {cell_s:.0f}s · peak RSS {row['peak_rss_mib']:.0f} MiB"
          + (f" · FAILED {row['error']}" if row.get("error") else ""), file=sys.stderr, flush=True)
    return row


# --- table ---------------------------------------------------------------------------------------------------------


def _median(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return statistics.median(vals) if vals else None


def _fmt(v: float | None, spec: str = ".3g", unit: str = " %") -> str:
    return "—" if v is None else f"{v:{spec}}{unit}"


def summarize(rows: list[dict[str, Any]], arms: list[str]) -> dict[str, dict[str, Any]]:
    """Medians over seeds per arm (failed seeds count in n_failed, not in the medians)."""
    out: dict[str, dict[str, Any]] = {}
    for arm in arms:
        rs = [r for r in rows if r["arm"] == arm]
        if not rs:
            continue
        ok = [r for r in rs if not r.get("error")]
        med = {k: _median([r.get(k) for r in ok]) for k in (*METRICS, "wall_s", "peak_rss_mib")}
        med["phase_s"] = {p: _median([r["phase_s"].get(p) for r in ok if p in r.get("phase_s", {})]) for p in PHASES}
        med.update(seeds=sorted(r["seed"] for r in rs), n_failed=len(rs) - len(ok),
                   holdout_far100_per_seed=[None if r.get("error") else r.get("holdout_far100")
                                            for r in sorted(rs, key=lambda r: r["seed"])])
        out[arm] = med
    return out


def table(summary: dict[str, dict[str, Any]], header: str) -> str:
    lines = [header, "",
             "| arm | KPI FAR@100 | KPI FAR@99 | KPI AUROC | holdout FAR@100 [per seed] | holdout FAR@99 "
             "| holdout AUROC | wall | Phase 1 | Phase 2 | Phase 3 | peak RSS |", "|---" * 12 + "|"]
    for arm, m in summary.items():
        per = ", ".join("failed" if v is None else f"{v:.3g}" for v in m["holdout_far100_per_seed"])
        ph = [_fmt(m["phase_s"].get(p), ".0f", " s") for p in PHASES]
        fail = f" ({m['n_failed']} failed)" if m["n_failed"] else ""
        lines.append(f"| {arm}{fail} | {_fmt(m['kpi_far100'])} | {_fmt(m['kpi_far99'])} | "
                     f"{_fmt(m['kpi_auroc'], '.4f', '')} | {_fmt(m['holdout_far100'])} [{per}] | "
                     f"{_fmt(m['holdout_far99'])} | {_fmt(m['holdout_auroc'], '.4f', '')} | "
                     f"{_fmt(m['wall_s'], '.0f', ' s')} | {' | '.join(ph)} | "
                     f"{_fmt(m['peak_rss_mib'], '.0f', ' MiB')} |")
    lines += ["", "wall: the arm's own run (phase12: run start to the loop_stop event of all3; zeroshot: scoring "
              "KPI + holdout); scoring by this script is outside it. Phase 2 includes its training. Peak RSS: the "
              "cell's process tree high-water mark (phase12 only scores). FAR@100 hinges on the hardest 1–3 "
              "defects (SPEC §8): a single-seed change below 2× is noise."]
    return "\n".join(lines)


def _header(args: argparse.Namespace, ws: Path, rows: list[dict[str, Any]]) -> str:
    imp = json.loads((ws / "import_summary.json").read_text())
    counts = ", ".join(f"{split} {d['n_rows']}" for split, d in imp.get("splits", {}).items())
    return (f"DeepPCB{' --quick' if args.quick else ''}: {imp['pairs']['used']} pairs, {args.crop} px {args.mode} "
            f"crops, rows per split: {counts or 'see import_summary.json'} (importer pass ratio 0.9); "
            f"{args.recommendations} AutoML trials/phase, {args.max_iterations} DEFT iteration(s), epochs "
            f"{args.epochs or 'spec'}; medians over seeds {sorted({r['seed'] for r in rows})}.")


# --- main ------------------------------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="DeepPCB folder (holding PCBData/)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="default bench/out/realdata (--quick: bench/out/realdata_quick, so the two never mix)")
    ap.add_argument("--quick", action="store_true", help=f"smoke caps: {QUICK}")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ablation", action="store_true", help=f"also run {', '.join(ABLATION_ARMS)}")
    ap.add_argument("--max-iterations", type=int, default=None, help="DEFT iterations (default 2; quick 1)")
    ap.add_argument("--recommendations", type=int, default=None, help="AutoML trials per phase (default 5; quick 2)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per training (default: the spec's; quick 2)")
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--mode", default="defect-centred", help="importer crop mode: defect-centred | tiles")
    ap.add_argument("--stride", type=int, default=None)
    ap.add_argument("--max-pairs", type=int, default=None, help="importer cap (quick 40)")
    ap.add_argument("--max-per-split", type=int, default=None, help="importer cap (default 8000; quick 150)")
    ap.add_argument("--kpi-target", type=float, default=5.0)
    ap.add_argument("--algorithm", default="bayesian")
    ap.add_argument("--noise-rerun", choices=("on", "off"), default="off")
    ap.add_argument("--backend", default="native")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--child-arm", help=argparse.SUPPRESS)
    ap.add_argument("--child-seed", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    full = {"max_pairs": None, "max_per_split": 8000, "max_iterations": 2, "recommendations": 5, "epochs": None}
    for key, value in (QUICK if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    default_dir = BENCH_DIR / "out" / ("realdata_quick" if args.quick else "realdata")
    args.workdir = (args.workdir or default_dir).resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.child_arm:
        return run_child(args)
    src = _pcbdata(args.data)
    if src is None:
        print(f"DeepPCB not found under {args.data} (expected PCBData/group*/...); pass --data DIR.", file=sys.stderr)
        return 2
    ws, import_s = ensure_workspace(args, src)
    arms = [*MAIN_ARMS, *(ABLATION_ARMS if args.ablation else ())]
    order = [(a, s) for s in range(args.seeds) for a in MAIN_ARMS]
    order += [(a, s) for s in range(args.seeds) for a in ABLATION_ARMS] if args.ablation else []
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if not k.startswith("child")}
    old = args.workdir / "settings.json"
    if import_s is None and old.exists():  # the import ran in an earlier invocation: keep its time
        import_s = json.loads(old.read_text()).get("import_s")
    _write_json(old, {**settings, "import_s": import_s})
    rows = [r for a, s in order if (r := run_cell(args, argv, a, s)) is not None]
    summary = summarize(rows, arms)
    header = _header(args, ws, rows)
    text = table(summary, header)
    _write_json(args.workdir / "realdata.json", {"settings": settings, "import_s": import_s, "header": header,
                                                 "summary": summary, "rows": rows})
    (args.workdir / "realdata.md").write_text(text + "\n")
    print(text)
    return 0 if len(rows) == len(order) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Synthetic AOI dataset generator: PCB component crops as golden/test pairs in two lights.

Example:
    summary = make_demo_workspace(Path("demo_ws"), scale="small", seed=0)
    print(summary.one_line())
"""
from __future__ import annotations

from deftpipe.demo.catalog import DEFECT_LABELS, GAP_LABELS, LIGHTS, SCALES, ScaleConfig
from deftpipe.demo.synth import SynthPair, synthesize_pair
from deftpipe.demo.workspace import MARKER_NAME, DemoSummary, make_demo_workspace

__all__ = [
    "DEFECT_LABELS",
    "GAP_LABELS",
    "LIGHTS",
    "MARKER_NAME",
    "SCALES",
    "DemoSummary",
    "ScaleConfig",
    "SynthPair",
    "make_demo_workspace",
    "synthesize_pair",
]

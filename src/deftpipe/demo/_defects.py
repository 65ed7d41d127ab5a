"""What makes a test scene differ from its golden: acceptable process variation and real defects.

PASS variation (placement within tolerance, fillet shape, body colour, a new
marking lot, glare on metal) is what a pixel-difference scorer flags and a
learned model can learn to accept. Each defect edits the scene the way the
physical failure would look from above, in at least one light.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deftpipe.demo._render import ring, stroke
from deftpipe.demo._scene import MARGIN, Overlay, Scene, Terminal, circle, marking_for


def apply_pass_variation(scene: Scene, rng: np.random.Generator) -> None:
    """Board-to-board variation that is not a defect (always drawn, so every pair carries some)."""
    f = scene.scale
    ang = rng.uniform(0, 2 * np.pi)
    r = 1.5 * f * np.sqrt(rng.uniform(0, 1))  # placement within ±1.5 px (64 px crops)
    scene.offset = scene.offset + r * np.array([np.cos(ang), np.sin(ang)])
    scene.dtheta += np.deg2rad(rng.uniform(-1.2, 1.2))
    for term in scene.part.terminals:
        term.extent = float(np.clip(term.extent * rng.uniform(0.8, 1.15), 0.55, 1.0))
        term.power = float(term.power * rng.uniform(0.75, 1.3))
    part = scene.part
    if rng.random() < 0.35:
        delta = rng.choice([-1.0, 1.0]) * rng.uniform(8, 25)
        part.body_level = (part.body_level[0] + delta, part.body_level[1] + 0.5 * delta)
        part.marking_level = (part.marking_level[0] + delta, part.marking_level[1] + 0.5 * delta)
    if part.marking and rng.random() < 0.3:
        part.marking = marking_for(part.kind, part.body, rng)
    if rng.random() < 0.3:
        term = part.terminals[int(rng.integers(0, len(part.terminals)))]
        toe = scene.to_canvas(term.toe, placed=True).mean(axis=0)
        out = scene.rot(True) @ term.out
        spot = toe + out * rng.uniform(-1.0, 2.5) * f
        amp = rng.uniform(40, 90)
        light_b = rng.random() < 0.5
        scene.glare.append((float(spot[0]), float(spot[1]), float(rng.uniform(0.8, 2.0) * f),
                            0.0 if light_b else amp, amp if light_b else 0.0))


def _pick(rng: np.random.Generator, terms: list[Terminal], most: int) -> list[Terminal]:
    n = int(rng.integers(1, min(most, len(terms)) + 1))
    idx = rng.choice(len(terms), size=n, replace=False)
    return [terms[int(i)] for i in sorted(idx)]


def _missing(scene: Scene, rng: np.random.Generator) -> None:
    scene.part.visible = False
    for term in scene.part.terminals:
        term.present = False
        term.flat_solder = True


def _shift(scene: Scene, rng: np.random.Generator) -> None:
    f = scene.scale
    ang = rng.uniform(0, 2 * np.pi)
    scene.offset = rng.uniform(3.5, 6.0) * f * np.array([np.cos(ang), np.sin(ang)])
    scene.dtheta = np.deg2rad(rng.uniform(-6, 6))


def _tombstone(scene: Scene, rng: np.random.Generator) -> None:
    part = scene.part
    keep = int(rng.integers(0, 2))
    width = float(np.ptp(part.body[:, 1]))
    length = float(np.ptp(part.body[:, 0]))
    thick = rng.uniform(0.45, 0.6) * width
    sgn = float(part.terminals[keep].out[0])
    # Standing on one end: from above only the other end cap's face shows, over the kept pad.
    x = sgn * (length / 2 - thick / 2)
    face = np.array([[x - thick / 2, -width / 2], [x + thick / 2, -width / 2], [x + thick / 2, width / 2],
                     [x - thick / 2, width / 2]])
    part.body = face
    part.body_level = (scene.style.metal[0] * 0.95, scene.style.metal[1] * 1.1)
    part.marking = []
    standing = part.terminals[keep]
    standing.metal = face
    standing.toe = np.array([[x + sgn * thick / 2, -width / 2], [x + sgn * thick / 2, width / 2]])
    standing.extent = 1.0
    lifted = part.terminals[1 - keep]
    lifted.present = False
    lifted.flat_solder = True


def _bridge(scene: Scene, rng: np.random.Generator) -> None:
    f = scene.scale
    terms = scene.part.terminals
    pairs: list[tuple[Terminal, Terminal]] = []
    for side in (-1.0, 1.0):
        row = sorted((t for t in terms if t.out[0] == side), key=lambda t: float(t.pad_edge[1]))
        pairs.extend(zip(row, row[1:]))
    if not pairs:
        raise ValueError(f"a bridge needs two neighbouring leads; kind '{scene.part.kind}' has none")
    a, b = pairs[int(rng.integers(0, len(pairs)))]
    pad_len = float(np.ptp(a.pad[:, 0]))
    x_mid = a.pad_edge[0] - a.out[0] * pad_len * rng.uniform(0.3, 0.5)
    rx = pad_len * rng.uniform(0.4, 0.55)
    y0, y1 = sorted((a.pad_edge[1], b.pad_edge[1]))
    ry = (y1 - y0) / 2 + rng.uniform(0.3, 1.0) * f
    ang = np.linspace(0, 2 * np.pi, 14, endpoint=False)
    wobble = rng.uniform(0.85, 1.1, ang.size)
    blob = np.stack([x_mid + rx * wobble * np.cos(ang), (y0 + y1) / 2 + ry * wobble * np.sin(ang)], axis=1)
    poly = scene.to_canvas(blob, placed=False)
    centre = poly.mean(axis=0)
    fa, fb = scene.style.solder_flat
    sa, sb = scene.style.solder_slope
    # The meniscus between the leads: steep flanks (bright in LightB) around a flat top (bright in LightA).
    s = rng.uniform(0.65, 0.85)
    scene.overlays.append(Overlay("top", [poly], (fa + (sa - fa) * s, fb + (sb - fb) * s)))
    s = rng.uniform(0.05, 0.2)
    core = centre + rng.uniform(0.55, 0.75) * (poly - centre)
    scene.overlays.append(Overlay("top", [core], (fa + (sa - fa) * s, fb + (sb - fb) * s)))


def _excess(scene: Scene, rng: np.random.Generator) -> None:
    for term in _pick(rng, scene.part.terminals, 3):
        term.extent = rng.uniform(1.15, 1.45)
        term.width = rng.uniform(1.25, 1.5)
        term.convex = True
        term.climb = rng.uniform(0.4, 0.8)


def _insufficient(scene: Scene, rng: np.random.Generator) -> None:
    for term in _pick(rng, scene.part.terminals, 3):
        term.extent = rng.uniform(0.0, 0.25)
        term.width = rng.uniform(0.6, 1.0)


def _interior_point(scene: Scene, rng: np.random.Generator, pad: float) -> np.ndarray:
    c = scene.canvas_size
    return rng.uniform(MARGIN + pad, c - MARGIN - pad, 2)


def _foreign(scene: Scene, rng: np.random.Generator) -> None:
    f = scene.scale
    p = _interior_point(scene, rng, 6 * f)
    if rng.random() < 0.6:  # a dark particle (flux residue, burnt debris)
        r = max(rng.uniform(1.8, 4.0) * f, 1.1)
        blob = circle(p, r, 10) + rng.uniform(-0.35, 0.35, (10, 2)) * r
        scene.overlays.append(Overlay("top", [blob], (rng.uniform(12, 35), rng.uniform(15, 35))))
        # It stands proud of the board: the low-angle light catches its rim whatever lies beneath.
        scene.overlays.append(Overlay("top", ring(blob, max(0.5 * f, 0.5)), (0.0, rng.uniform(150, 200)),
                                      alpha=(0.0, 0.9)))
    else:  # a fibre: thin and curved; dark from above, its round flank glints in the low-angle light
        n = 5
        ang = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.uniform(-0.5, 0.5, n))
        step = rng.uniform(10, 24) * f / n
        pts = p + np.cumsum(np.stack([np.cos(ang), np.sin(ang)], axis=1) * step, axis=0)
        width = max(rng.uniform(0.7, 1.2) * f, 0.7)
        polys = [stroke(pts[i], pts[i + 1], width) for i in range(n - 1)]
        polys += [circle(q, width / 2, 8) for q in pts[1:-1]]
        scene.overlays.append(Overlay("top", polys, (rng.uniform(20, 55), rng.uniform(160, 205))))


def _scratch(scene: Scene, rng: np.random.Generator) -> None:
    # A groove through the coating: exposed material (bright from above), edges that glint in the low light.
    f = scene.scale
    p = _interior_point(scene, rng, 4 * f)
    ang = rng.uniform(0, np.pi)
    half = rng.uniform(8, 16) * f
    d = np.array([np.cos(ang), np.sin(ang)]) * half
    width = max(rng.uniform(0.8, 1.4) * f, 0.7)
    scene.overlays.append(Overlay("top", [stroke(p - d, p + d, width)], (rng.uniform(165, 210), rng.uniform(190, 235)),
                                  alpha=(rng.uniform(0.85, 1.0), rng.uniform(0.8, 1.0))))


DEFECTS: dict[str, Callable[[Scene, np.random.Generator], None]] = {
    "missing": _missing,
    "shift": _shift,
    "tombstone": _tombstone,
    "bridge": _bridge,
    "excess_solder": _excess,
    "insufficient_solder": _insufficient,
    "foreign_material": _foreign,
    "scratch": _scratch,
}

"""Scene model of one PCB component crop and its two-light rendering.

A scene is the board (solder mask with weave texture, traces, vias, silkscreen),
the land pattern (copper pads, fixed to the board) and a placed part (body,
terminals or leads, marking) joined to the pads by solder fillets. LightA is a
diffuse top light (flat metal bright, fillet slopes dark); LightB a low-angle
ring light (slopes and edges bright, flat surfaces dark). Geometry is in output
pixels of the enlarged canvas; part geometry is local (x = terminal axis).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from deftpipe.demo._render import Canvas, rect, ring, stroke, strokes

MARGIN = 4  # px rendered around the crop so that a shifted capture never shows a border
Pair = tuple[float, float]

# Seven-segment glyphs: enough to read as part markings and silkscreen reference designators.
_SEGMENTS = {"a": ((0, 0), (1, 0)), "b": ((1, 0), (1, .5)), "c": ((1, .5), (1, 1)), "d": ((0, 1), (1, 1)),
             "e": ((0, .5), (0, 1)), "f": ((0, 0), (0, .5)), "g": ((0, .5), (1, .5))}
_DIGITS = ("abcdef", "bc", "abdeg", "abcdg", "bcfg", "acdfg", "acdefg", "abc", "abcdefg", "abcdfg")


@dataclass(frozen=True)
class BoardStyle:
    """Materials of one board: grey levels per light (LightA, LightB) and the mask texture."""

    mask: Pair
    weave_amp: float
    weave_period: float
    pad: Pair
    solder_flat: Pair
    solder_slope: Pair
    metal: Pair
    silk: Pair
    body_dark: float
    body_tan: float


def sample_board_style(rng: np.random.Generator) -> BoardStyle:
    a = rng.uniform
    return BoardStyle(
        mask=(a(70, 100), a(40, 60)), weave_amp=a(2.0, 5.0), weave_period=a(3.0, 5.0),
        pad=(a(185, 215), a(78, 100)), solder_flat=(a(172, 200), a(58, 78)), solder_slope=(a(55, 85), a(205, 240)),
        metal=(a(185, 212), a(118, 148)), silk=(a(198, 228), a(148, 178)), body_dark=a(20, 38),
        body_tan=a(122, 160),
    )


@dataclass
class Terminal:
    """One solder joint: the part's metal (end cap or lead) and the pad it sits on."""

    metal: np.ndarray     # (4, 2) local polygon, moves with the part
    toe: np.ndarray       # (2, 2) local end points of the metal's outer face
    out: np.ndarray       # (2,) local unit vector pointing away from the body
    pad: np.ndarray       # (4, 2) local polygon in the nominal (land-pattern) frame
    pad_edge: np.ndarray  # (2,) local centre of the pad's outer edge, nominal frame
    extent: float = 0.9   # share of the toe-to-pad-edge distance the fillet covers
    power: float = 1.0    # slope profile exponent: larger = slope concentrated at the toe
    width: float = 1.0    # fillet width relative to the toe width
    convex: bool = False  # overfilled, bulging joint
    climb: float = 0.0    # share of the metal covered by solder
    present: bool = True  # metal is there (False: missing part, lifted end)
    flat_solder: bool = False  # reflowed paste on a pad without a terminal


@dataclass
class Part:
    kind: str
    body: np.ndarray
    body_level: Pair
    terminals: list[Terminal]
    marking: list[np.ndarray] = field(default_factory=list)
    marking_level: Pair = (0.0, 0.0)
    visible: bool = True


@dataclass
class Overlay:
    """Paint in canvas coordinates: `stage` orders it among the scene layers."""

    stage: str  # "solder" (under the part) | "top" (over everything)
    polys: list[np.ndarray]
    values: Pair
    alpha: Pair = (1.0, 1.0)


@dataclass
class Scene:
    size: int
    scale: float
    style: BoardStyle
    texture: np.ndarray  # (2, C, C) mask grey levels incl. weave
    centre: np.ndarray
    theta: float
    part: Part
    offset: np.ndarray = field(default_factory=lambda: np.zeros(2))
    dtheta: float = 0.0
    traces: list[np.ndarray] = field(default_factory=list)
    vias: list[tuple[np.ndarray, float]] = field(default_factory=list)
    silk: list[np.ndarray] = field(default_factory=list)
    overlays: list[Overlay] = field(default_factory=list)
    glare: list[tuple[float, float, float, float, float]] = field(default_factory=list)

    @property
    def canvas_size(self) -> int:
        return self.size + 2 * MARGIN

    def rot(self, placed: bool) -> np.ndarray:
        t = self.theta + (self.dtheta if placed else 0.0)
        c, s = math.cos(t), math.sin(t)
        return np.array([[c, -s], [s, c]])

    def to_canvas(self, pts: np.ndarray, *, placed: bool) -> np.ndarray:
        shift = self.centre + (self.offset if placed else 0.0)
        return np.asarray(pts, np.float64) @ self.rot(placed).T + shift

    def polys_to_canvas(self, polys: list[np.ndarray], *, placed: bool) -> list[np.ndarray]:
        if not polys:
            return []
        moved = self.to_canvas(np.concatenate(polys, axis=0), placed=placed)
        ends = np.cumsum([len(p) for p in polys])
        return [moved[e - len(p):e] for p, e in zip(polys, ends)]

    def clone(self) -> Scene:
        """An independent copy; arrays are shared because scene edits replace them, never write into them."""
        part = replace(self.part, terminals=[replace(t) for t in self.part.terminals], marking=list(self.part.marking))
        return replace(self, part=part, overlays=list(self.overlays), glare=list(self.glare))


def glyphs(text: str, x: float, y: float, height: float) -> list[np.ndarray]:
    """Seven-segment strokes of `text` with its top-left corner at (x, y)."""
    w = 0.55 * height
    ends = [((x + k * (w + 0.35 * height)), seg) for k, ch in enumerate(text) for seg in _DIGITS[int(ch)]]
    if not ends:
        return []
    seg = np.array([_SEGMENTS[name] for _, name in ends], np.float64)  # (n, 2 ends, 2)
    x0 = np.array([x0 for x0, _ in ends])[:, None]
    px = x0 + seg[:, :, 0] * w
    py = y + seg[:, :, 1] * height
    return list(strokes(np.stack([px[:, 0], py[:, 0]], 1), np.stack([px[:, 1], py[:, 1]], 1),
                        max(0.16 * height, 0.45)))


def marking_for(kind: str, body: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Body marking in local coordinates (value code on resistors, part code and pin-1 dot on ICs)."""
    lo, hi = body.min(axis=0), body.max(axis=0)
    bw, bh = hi - lo
    if kind == "capacitor":
        return []
    n = {"chip_resistor": 3, "sot": 2, "ic": 3}[kind]
    h = min(0.45 * bh, 0.55 * bw / (n * 0.9))
    text = "".join(str(int(d)) for d in rng.integers(0, 10, n))
    tw = n * 0.55 * h + (n - 1) * 0.35 * h
    strokes = glyphs(text, -tw / 2 + rng.uniform(-0.4, 0.4), -h / 2 + rng.uniform(-0.4, 0.4), h)
    if kind == "ic":
        r = 0.09 * min(bw, bh)
        c = lo + np.array([0.22 * bw, 0.2 * bh])
        ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        strokes.append(np.stack([c[0] + r * np.cos(ang), c[1] + r * np.sin(ang)], axis=1))
    return strokes


def _chip(kind: str, f: float, style: BoardStyle, rng: np.random.Generator) -> Part:
    if kind == "chip_resistor":
        length, width, cap = rng.uniform(22, 28) * f, rng.uniform(11, 14) * f, 0.2
        level = style.body_dark + rng.uniform(-4, 4)
    else:
        length, width, cap = rng.uniform(24, 30) * f, rng.uniform(13, 17) * f, 0.25
        level = style.body_tan + rng.uniform(-6, 6)
    cap_len = cap * length
    pad_len = cap_len + rng.uniform(6, 8) * f
    pad_w = width * rng.uniform(1.1, 1.25)
    terminals = []
    for sgn in (-1.0, 1.0):
        inner = sgn * (length / 2 - cap_len - 0.5 * f)
        terminals.append(Terminal(
            metal=rect(sgn * (length / 2 - cap_len / 2), 0.0, cap_len, width),
            toe=np.array([[sgn * length / 2, -width / 2], [sgn * length / 2, width / 2]]),
            out=np.array([sgn, 0.0]),
            pad=rect(inner + sgn * pad_len / 2, 0.0, pad_len, pad_w),
            pad_edge=np.array([inner + sgn * pad_len, 0.0]),
        ))
    body = rect(0.0, 0.0, length, width)
    return Part(kind, body, (level, 0.55 * level), terminals, marking_for(kind, body, rng),
                (level + rng.uniform(80, 110), 0.55 * level + 25))


def _leaded(kind: str, f: float, style: BoardStyle, rng: np.random.Generator) -> Part:
    if kind == "sot":
        bx, by, lead_w, lead_len, pad_w, pad_len = 13 * f, 24 * f, 3.2 * f, 6 * f, 5.5 * f, 9 * f
        rows = {1.0: (-8 * f, 8 * f), -1.0: (0.0,)}
    else:
        bx, by, lead_w, lead_len, pad_w, pad_len = 22 * f, 30 * f, 2.2 * f, 5.5 * f, 3.4 * f, 8.5 * f
        ys = (-9.75 * f, -3.25 * f, 3.25 * f, 9.75 * f)
        rows = {1.0: ys, -1.0: ys}
    bx *= rng.uniform(0.95, 1.05)
    terminals = []
    for sgn, ys in rows.items():
        for y in ys:
            x_in, x_toe = sgn * bx / 2, sgn * (bx / 2 + lead_len)
            pad_in = sgn * (bx / 2 + 2.5 * f)
            terminals.append(Terminal(
                metal=rect((x_in + x_toe) / 2, y, lead_len, lead_w),
                toe=np.array([[x_toe, y - lead_w / 2], [x_toe, y + lead_w / 2]]),
                out=np.array([sgn, 0.0]),
                pad=rect(pad_in + sgn * pad_len / 2, y, pad_len, pad_w),
                pad_edge=np.array([pad_in + sgn * pad_len, y]),
            ))
    body = rect(0.0, 0.0, bx, by)
    level = style.body_dark + rng.uniform(-4, 4)
    return Part(kind, body, (level, 0.55 * level), terminals, marking_for(kind, body, rng),
                (level + rng.uniform(70, 100), 0.55 * level + 22))


def build_scene(kind: str, size: int, style: BoardStyle, rng: np.random.Generator) -> Scene:
    """A defect-free component crop as designed: the golden's scene."""
    f = size / 64.0
    part = _chip(kind, f, style, rng) if kind in ("chip_resistor", "capacitor") else _leaded(kind, f, style, rng)
    for term in part.terminals:
        term.extent = rng.uniform(0.8, 1.0)
        term.power = rng.uniform(0.8, 1.3)
    c = size + 2 * MARGIN
    centre = np.array([c / 2, c / 2]) + rng.uniform(-3, 3, 2) * f
    theta = float(rng.integers(0, 4)) * np.pi / 2
    scene = Scene(size, f, style, _texture(c, style, rng), centre, theta, part)
    _board_features(scene, rng)
    return scene


def _texture(c: int, style: BoardStyle, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:c, 0:c].astype(np.float32)
    ang = rng.uniform(0, np.pi)
    u = xx * np.cos(ang) + yy * np.sin(ang)
    v = -xx * np.sin(ang) + yy * np.cos(ang)
    p = style.weave_period
    weave = style.weave_amp * np.sin(2 * np.pi * u / p + rng.uniform(0, 6.3)) * np.sin(2 * np.pi * v / p)
    blotch = cv2.GaussianBlur(rng.normal(0, 1, (c, c)).astype(np.float32), (0, 0), 4.0)
    blotch *= rng.uniform(3, 6) / max(float(blotch.std()), 1e-6)
    fine = rng.normal(0, 1.2, (c, c)).astype(np.float32)
    a = style.mask[0] + weave + blotch + fine
    b = style.mask[1] + 1.3 * weave + 0.7 * blotch + fine
    return np.stack([a, b]).astype(np.float32)


def _board_features(scene: Scene, rng: np.random.Generator) -> None:
    f, part = scene.scale, scene.part
    for term in part.terminals:
        if rng.random() < 0.5:
            w = 0.35 * float(np.ptp(term.pad @ np.array([-term.out[1], term.out[0]])))
            end = term.pad_edge + term.out * 60 * f
            scene.traces.append(scene.to_canvas(stroke(term.pad_edge - term.out * f, end, max(w, 1.2)), placed=False))
    pads = np.concatenate([t.pad for t in part.terminals])
    lo, hi = pads.min(axis=0) - 2.5 * f, pads.max(axis=0) + 2.5 * f
    lo = np.minimum(lo, part.body.min(axis=0) - 2.5 * f)
    hi = np.maximum(hi, part.body.max(axis=0) + 2.5 * f)
    width = 0.9 * f + 0.3
    arm = 0.25 * (hi - lo)
    starts, ends = [], []
    for cx, sx in ((lo[0], 1), (hi[0], -1)):
        for cy, sy in ((lo[1], 1), (hi[1], -1)):
            for dx, dy in ((sx * arm[0], 0.0), (0.0, sy * arm[1])):
                starts.append((cx, cy))
                ends.append((cx + dx, cy + dy))
    brackets = strokes(np.array(starts), np.array(ends), width)
    scene.silk.extend(scene.polys_to_canvas(list(brackets), placed=False))
    c = scene.canvas_size
    ref = "".join(str(int(d)) for d in rng.integers(0, 10, 2))
    h = 5.0 * f
    corner = np.array([rng.choice([MARGIN + 1.0, c - MARGIN - 9 * f]), rng.choice([MARGIN + 1.0, c - MARGIN - 7 * f])])
    scene.silk.extend(glyphs(ref, float(corner[0]), float(corner[1]), h))
    for _ in range(int(rng.integers(0, 3))):
        p = rng.uniform(MARGIN + 3 * f, c - MARGIN - 3 * f, 2)
        local = (p - scene.centre) @ scene.rot(False)
        if np.all(local > lo - 2 * f) and np.all(local < hi + 2 * f):
            continue
        scene.vias.append((p, 1.7 * f))


def circle(c: np.ndarray, r: float, n: int = 16) -> np.ndarray:
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([c[0] + r * np.cos(ang), c[1] + r * np.sin(ang)], axis=1)


def _solder_values(style: BoardStyle, s: np.ndarray) -> np.ndarray:
    fa, fb = style.solder_flat
    sa, sb = style.solder_slope
    return np.stack([fa + (sa - fa) * s, fb + (sb - fb) * s])


def _fillets(cv: Canvas, scene: Scene, terms: list[Terminal]) -> None:
    """All solder fillets of a part in one pass: a ramp from the toe (steep) to the pad edge (flat)."""
    rot_placed, rot_nom = scene.rot(True), scene.rot(False)
    toes = scene.polys_to_canvas([t.toe for t in terms], placed=True)
    edges = scene.to_canvas(np.array([t.pad_edge for t in terms]), placed=False)
    quads, params, climbs = [], [], []
    for term, toe, edge in zip(terms, toes, edges):
        out = rot_placed @ term.out
        n_nom = rot_nom @ term.out
        mid = (toe[0] + toe[1]) / 2
        dist = float((edge - mid) @ n_nom) / max(float(out @ n_nom), 0.2)
        length = max(dist, 0.4 * scene.scale) * term.extent
        side = (toe[1] - toe[0]) / 2 * term.width
        if length > 0.15:
            tip = 1.25 if term.convex else 0.9
            quads.append(np.array([mid - side, mid + side, mid + out * length + side * tip,
                                   mid + out * length - side * tip]))
            params.append((mid[0], mid[1], out[0], out[1], length, term.power, float(term.convex)))
        if term.climb > 0:
            metal = scene.to_canvas(term.metal, placed=True)
            depth = float(np.ptp(metal @ out)) * term.climb
            climbs.append(np.array([mid - side * 1.1, mid + side * 1.1, mid - out * depth + side,
                                    mid - out * depth - side]))
    if quads:
        got = cv.labelled_coverage(quads)
        if got is not None:
            cov, labels, box = got
            # Row 0 serves anti-aliased edge pixels outside every quad: a mid-slope grey.
            p = np.array([(0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0), *params], np.float32)[labels]
            xs, ys = cv.axes(box)
            t = ((xs[None, :] - p[..., 0]) * p[..., 2] + (ys[:, None] - p[..., 1]) * p[..., 3]) / p[..., 4]
            t = np.clip(t, 0.0, 1.0)
            s = np.where(p[..., 6] > 0, 0.6 + 0.4 * (1 - t), (1.0 - t) ** p[..., 5])
            s[labels == 0] = 0.5
            cv.composite(cov, box, _solder_values(scene.style, s))
    if climbs:
        cv.poly(climbs, _solder_values(scene.style, np.array([0.75]))[:, 0])


def render_board(scene: Scene) -> Canvas:
    """The layers a test and its golden share (mask, traces, vias, silkscreen, pads), supersampled."""
    style = scene.style
    cv = Canvas(scene.canvas_size)
    cv.fill(np.stack([cv2.resize(p, (cv.hi, cv.hi), interpolation=cv2.INTER_LINEAR) for p in scene.texture]))
    if scene.traces:
        cv.poly(scene.traces, (style.mask[0] + 40, style.mask[1] + 22), alpha=(0.45, 0.35))
    if scene.vias:
        cv.poly([circle(c, r) for c, r in scene.vias], style.pad)
        cv.poly([circle(c, 0.45 * r) for c, r in scene.vias], (18.0, 14.0))
    if scene.silk:
        cv.poly(scene.silk, style.silk)
    pads = scene.polys_to_canvas([t.pad for t in scene.part.terminals], placed=False)
    cv.poly(pads, style.pad)
    cv.poly([r for p in pads for r in ring(p, 0.5)], (0.0, style.pad[1] + 45), alpha=(0.0, 0.6))
    return cv


def render(scene: Scene, board: Canvas | None = None) -> np.ndarray:
    """The scene seen in both lights: (2, C, C) float32 grey levels on the enlarged canvas.

    `board` (from `render_board` of a scene with the same board) saves redrawing the shared layers.
    """
    style, part = scene.style, scene.part
    cv = board.copy() if board is not None else render_board(scene)
    pads = scene.polys_to_canvas([t.pad for t in part.terminals], placed=False)
    flat = []
    for term, pad in zip(part.terminals, pads):
        if term.flat_solder:
            centre = pad.mean(axis=0)
            flat.append(centre + 0.8 * (pad - centre))
    if flat:
        cv.poly(flat, (style.solder_flat[0] + 8, style.solder_flat[1] + 6))
    if part.visible:
        _fillets(cv, scene, [t for t in part.terminals if t.present and not t.flat_solder])
    _overlays(cv, scene, "solder")
    if part.visible:
        body = scene.to_canvas(part.body, placed=True)
        cv.poly([body], part.body_level)
        cv.poly(ring(body, 0.6), (0.0, part.body_level[1] + 85), alpha=(0.0, 0.8))
        metal = scene.polys_to_canvas([t.metal for t in part.terminals if t.present], placed=True)
        if metal:
            cv.poly(metal, style.metal)
        if part.marking:
            cv.poly(scene.polys_to_canvas(part.marking, placed=True), part.marking_level)
    _overlays(cv, scene, "top")
    for cx, cy, sigma, amp_a, amp_b in scene.glare:
        cv.add_gaussian(cx, cy, sigma, (amp_a, amp_b))
    return cv.downsample()


def _overlays(cv: Canvas, scene: Scene, stage: str) -> None:
    for ov in scene.overlays:
        if ov.stage == stage:
            cv.poly(ov.polys, ov.values, alpha=ov.alpha)


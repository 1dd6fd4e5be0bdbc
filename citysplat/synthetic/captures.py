"""Capture sequences the way Mapillary contributors make them, with true and reported poses.

Cars drive the streets in the right-hand lane with a forward camera (an image every few
metres), people walk the (raised) sidewalks with phones at eye height above the ground they
stand on, a 360 camera rides a car roof; every sequence
has its own exposure, device and contributor, and a few images come out bad (blurred,
over-exposed, truncated). True poses are kept; what the API reports carries GPS and compass
noise the way real uploads do.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

from citysplat.synthetic.cameras import CameraModel, rotation_from_heading
from citysplat.synthetic.geometry import ground_height
from citysplat.synthetic.layout import LANE_OFFSET, Layout

EPOCH_MS = 1714550400000  # 2024-05-01T08:00:00Z: the first capture day of every generated city
_USERS = [("100004231", "sunset_driver"), ("100007712", "outer_sunset_walks"),
          ("100009020", "bay360"), ("100011375", "judah_mapper")]


@dataclass(frozen=True)
class Capture:
    """One image: true pose, camera, time, and how it was made."""

    image_id: str
    sequence_id: str
    index: int  # position in its sequence
    kind: str  # "car" | "walk" | "pano"
    captured_at_ms: int
    position: np.ndarray  # true camera centre, ENU metres
    rotation: np.ndarray  # true camera-to-world rotation (ENU)
    camera: CameraModel
    quality: str  # "ok" | "blurred" | "overexposed" | "truncated"
    exposure: float
    white_balance: tuple[float, float, float]
    make: str
    model: str
    creator: tuple[str, str]

    @property
    def scene_seconds(self) -> float:
        """Seconds since the city's first capture day (drives the moving objects)."""
        return (self.captured_at_ms - EPOCH_MS) / 1000.0


@dataclass(frozen=True)
class Reported:
    """What the API reports for a capture: noisy GPS and compass, better computed values."""

    lonlat: tuple[float, float]
    altitude: float
    compass: float
    computed_lonlat: tuple[float, float]
    computed_altitude: float
    computed_compass: float


def _sequence_key(rng: np.random.Generator) -> str:
    alphabet = np.array(list(string.ascii_letters + string.digits))
    return "".join(rng.choice(alphabet, 22))


def _route(layout: Layout, rng: np.random.Generator, length: float, offset: float,
           edge_use: dict, step: float = 0.5, turn_radius: float = 9.0) -> np.ndarray:
    """A drive through the grid: (N, 2) points every ``step`` m, ``offset`` m right of centre.

    Contributors go where the map is still empty: the route starts next to the least-covered
    street and prefers, at each intersection, the street driven least so far (``edge_use``,
    updated in place); it never turns back, and takes each turn on a circular arc of
    ``turn_radius`` metres, as a car does.
    """
    xs, ys = layout.avenues_x, layout.streets_y
    moves = [(1, 0), (-1, 0), (0, 1), (0, -1)]

    def edge(a, b):
        return (min(a, b), max(a, b))

    def neighbours(i, j):
        return [(i + m[0], j + m[1]) for m in moves
                if 0 <= i + m[0] < len(xs) and 0 <= j + m[1] < len(ys)]

    nodes_ij = [(i, j) for i in range(len(xs)) for j in range(len(ys))]
    score = [min(edge_use.get(edge(n, q), 0) for q in neighbours(*n)) + rng.random() * 0.5
             for n in nodes_ij]
    i, j = nodes_ij[int(np.argmin(score))]
    heading = None
    nodes = [np.array([xs[i], ys[j]])]
    total = 0.0
    while total < length + 20:
        options = [m for m in moves
                   if 0 <= i + m[0] < len(xs) and 0 <= j + m[1] < len(ys)
                   and (heading is None or m != (-heading[0], -heading[1]))]
        use = [edge_use.get(edge((i, j), (i + m[0], j + m[1])), 0) for m in options]
        least = [m for m, u in zip(options, use) if u == min(use)]
        if heading in least and rng.random() < 0.6:
            move = heading
        else:
            move = least[int(rng.integers(len(least)))]
        edge_use[edge((i, j), (i + move[0], j + move[1]))] = \
            edge_use.get(edge((i, j), (i + move[0], j + move[1])), 0) + 1
        i, j = i + move[0], j + move[1]
        nodes.append(np.array([xs[i], ys[j]]))
        total += float(np.linalg.norm(nodes[-1] - nodes[-2]))
        heading = move
    # lane corners: the node shifted right of both the incoming and the outgoing direction
    dirs = [(b - a) / np.linalg.norm(b - a) for a, b in zip(nodes[:-1], nodes[1:])]
    right = [np.array([d[1], -d[0]]) for d in dirs]
    corners = [nodes[0] + right[0] * offset]
    for k in range(1, len(nodes) - 1):
        if np.allclose(dirs[k - 1], dirs[k]):
            continue  # straight on: no corner
        corners.append(nodes[k] + (right[k - 1] + right[k]) * offset)
    corners.append(nodes[-1] + right[-1] * offset)
    path = _fillet(np.array(corners), turn_radius, step)
    seglen = np.r_[0, np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))]
    return path[seglen <= length]


def _fillet(corners: np.ndarray, radius: float, step: float) -> np.ndarray:
    """A polyline with every corner replaced by a circular arc of ``radius``, sampled every
    ``step`` metres."""
    pts = [corners[0]]
    for k in range(1, len(corners) - 1):
        a, c, b = corners[k - 1], corners[k], corners[k + 1]
        d1 = (c - a) / np.linalg.norm(c - a)
        d2 = (b - c) / np.linalg.norm(b - c)
        turn = np.arctan2(d1[0] * d2[1] - d1[1] * d2[0], np.dot(d1, d2))
        cut = min(radius * np.tan(abs(turn) / 2), 0.45 * np.linalg.norm(c - a),
                  0.45 * np.linalg.norm(b - c))
        r = cut / np.tan(abs(turn) / 2)
        start = c - d1 * cut
        normal = np.array([-d1[1], d1[0]]) * np.sign(turn)  # towards the arc's centre
        centre = start + normal * r
        n_arc = max(2, int(abs(turn) * r / step))
        ang0 = np.arctan2(start[1] - centre[1], start[0] - centre[0])
        angles = ang0 + np.linspace(0, turn, n_arc)
        pts += [start] + list(centre + r * np.column_stack([np.cos(angles), np.sin(angles)]))
    pts.append(corners[-1])
    # densify straight parts
    out = [pts[0]]
    for p, q in zip(pts[:-1], pts[1:]):
        n = max(1, int(np.linalg.norm(q - p) / step))
        out += list(p + np.outer(np.arange(1, n + 1) / n, q - p))
    out = np.array(out)
    keep = np.r_[True, np.linalg.norm(np.diff(out, axis=0), axis=1) > 1e-6]
    return out[keep]


def _resample(path: np.ndarray, spacings: np.ndarray, max_turn_deg: float = 9.0
              ) -> tuple[np.ndarray, np.ndarray]:
    """Capture points along ``path`` and the unit tangent at each.

    Steps follow ``spacings`` on straights and shrink in turns, so that the heading changes by
    at most ``max_turn_deg`` between images (a car slows down to turn, and time-lapse capture
    then takes images closer together).
    """
    seglen = np.r_[0, np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))]
    d = np.gradient(path, axis=0)
    theta = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
    curvature = np.abs(np.gradient(theta, seglen))  # rad per metre
    s_list, s, k = [], 0.0, 0
    while s < seglen[-1] - 1 and k < len(spacings):
        s_list.append(s)
        # the sharpest curvature over the next nominal step bounds this step
        ahead = (seglen >= s) & (seglen <= s + spacings[k])
        kappa = float(curvature[ahead].max()) if ahead.any() else 0.0
        s += max(0.8, min(spacings[k], np.radians(max_turn_deg) / max(kappa, 1e-6)))
        k += 1
    s = np.asarray(s_list)
    x = np.interp(s, seglen, path[:, 0])
    y = np.interp(s, seglen, path[:, 1])
    ahead = np.minimum(s + 1.0, seglen[-1])
    behind = np.maximum(s - 1.0, 0)
    tx = np.interp(ahead, seglen, path[:, 0]) - np.interp(behind, seglen, path[:, 0])
    ty = np.interp(ahead, seglen, path[:, 1]) - np.interp(behind, seglen, path[:, 1])
    t = np.column_stack([tx, ty])
    return np.column_stack([x, y]), t / np.linalg.norm(t, axis=1, keepdims=True)


def plan_captures(layout: Layout, seed_offset: int = 0, first_sequence: int = 0,
                  kinds: list[str] | None = None) -> list[Capture]:
    """All captures of the city, sequence by sequence, in capture order.

    ``kinds`` overrides the spec's mix (e.g. ``["car"]`` for one extra sequence), and
    ``first_sequence`` numbers the sequences so extra ones are later in time and distinct.
    """
    spec = layout.spec
    rng = np.random.default_rng([spec.seed, 3, seed_offset])
    if kinds is None:
        kinds = (["car"] * spec.car_sequences + ["walk"] * spec.walk_sequences
                 + ["pano"] * spec.pano_sequences)
    captures: list[Capture] = []
    used_ids: set[str] = set()
    edge_use: dict = {}  # how often each street segment has been captured (spreads coverage)
    for q, kind in enumerate(kinds):
        seq_no = first_sequence + q
        seq_rng = np.random.default_rng([spec.seed, 4, seed_offset, seq_no])
        seq_id = _sequence_key(seq_rng)
        start_ms = EPOCH_MS + seq_no * 86_400_000 + int(seq_rng.uniform(0, 8 * 3600_000))
        exposure = float(seq_rng.uniform(0.8, 1.2))
        wb = tuple(float(v) for v in 1 + seq_rng.normal(0, 0.04, 3))
        w = spec.image_width
        if kind == "car":
            cam = CameraModel("perspective", w, w * 3 // 4, focal=float(seq_rng.uniform(0.72, 0.8)),
                              k1=float(seq_rng.uniform(-0.08, -0.03)),
                              k2=float(seq_rng.uniform(0.0, 0.02)))
            length = spec.car_route * float(seq_rng.uniform(0.94, 1.1))
            path = _route(layout, seq_rng, length=length, edge_use=edge_use,
                          offset=LANE_OFFSET)
            spacing = seq_rng.uniform(*spec.car_spacing, size=400)
            height, speed, look, make, model = 1.55, 8.0, 0.0, "GoPro", "HERO8 Black"
            creator = _USERS[0] if q % 2 == 0 else _USERS[3]
        elif kind == "walk":
            cam = CameraModel("perspective", w, w * 3 // 4, focal=float(seq_rng.uniform(0.8, 0.9)),
                              k1=float(seq_rng.uniform(-0.03, 0.0)), k2=0.0)
            length = spec.walk_route * float(seq_rng.uniform(0.9, 1.1))
            path = _route(layout, seq_rng, length=length, edge_use=edge_use,
                          offset=float(seq_rng.choice([-1, 1]) * 8.0))
            spacing = seq_rng.uniform(*spec.walk_spacing, size=400)
            height, speed, make, model = 1.5, 1.4, "Apple", "iPhone 12"
            look = float(seq_rng.choice([-1, 1]) * seq_rng.uniform(10, 35))
            creator = _USERS[1]
        elif kind == "pano":
            cam = CameraModel("spherical", w, w // 2)
            length = spec.pano_route * float(seq_rng.uniform(0.9, 1.1))
            path = _route(layout, seq_rng, length=length, edge_use=edge_use,
                          offset=LANE_OFFSET)
            spacing = np.full(400, spec.pano_spacing)
            height, speed, look, make, model = 2.3, 6.0, 0.0, "GoPro", "MAX"
            creator = _USERS[2]
        else:
            raise ValueError(f"unknown capture kind {kind!r}")
        xy, tangent = _resample(path, spacing)
        # a walker holds the phone above the ground they stand on (the sidewalk is raised; they
        # step down to cross a street); cars and the roof camera stay on the roadway
        ground = ground_height(layout, xy) if kind == "walk" else np.zeros(len(xy))
        t_ms = start_ms + np.r_[0, np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))] \
            / speed * 1000
        for k, (p, d) in enumerate(zip(xy, tangent)):
            heading = float(np.degrees(np.arctan2(d[0], d[1])))
            jitter = seq_rng.normal(0, [1.0, 1.2, 0.8]) if kind != "pano" else np.zeros(3)
            yaw = heading + look + jitter[0]
            pitch = (2.0 if kind == "walk" else 0.0) + jitter[1]
            rotation = rotation_from_heading(yaw, pitch, jitter[2])
            bump = seq_rng.normal(0, 0.02)
            position = np.array([p[0], p[1], ground[k] + height + bump])
            quality = "ok"
            if seq_rng.random() < spec.bad_image_rate and 2 <= k < len(xy) - 2:
                quality = str(seq_rng.choice(["blurred", "overexposed", "truncated"]))
            while True:
                image_id = str(int(rng.integers(10**14, 10**15)))
                if image_id not in used_ids:
                    used_ids.add(image_id)
                    break
            captures.append(Capture(image_id, seq_id, k, kind, int(t_ms[k]), position, rotation,
                                    cam, quality, exposure, wb, make, model, creator))
    return captures


def report(captures: list[Capture], layout: Layout, frame) -> dict[str, Reported]:
    """Noisy API values per image: GPS error correlated along a sequence (AR(1), sigma from
    the spec), compass noise, and tighter 'computed' values."""
    spec = layout.spec
    out: dict[str, Reported] = {}
    by_seq: dict[str, list[Capture]] = {}
    for c in captures:
        by_seq.setdefault(c.sequence_id, []).append(c)
    rho = 0.85
    for seq_id, caps in by_seq.items():
        rng = np.random.default_rng([spec.seed, 5, *[ord(ch) for ch in seq_id]])
        err = rng.normal(0, spec.gps_sigma, 2)
        for c in caps:
            err = rho * err + np.sqrt(1 - rho**2) * rng.normal(0, spec.gps_sigma, 2)
            cerr = rng.normal(0, spec.computed_sigma, 2)
            heading = float(np.degrees(np.arctan2(c.rotation[0, 2], c.rotation[1, 2])))
            alt_true = layout.spec.ground_alt + float(c.position[2])
            gps = frame.to_lonlat([[c.position[0] + err[0], c.position[1] + err[1], 0]])[0]
            comp = frame.to_lonlat([[c.position[0] + cerr[0], c.position[1] + cerr[1], 0]])[0]
            out[c.image_id] = Reported(
                lonlat=(float(gps[0]), float(gps[1])),
                altitude=alt_true + float(rng.normal(0, 4.0)),
                compass=float((heading + rng.normal(0, spec.compass_sigma)) % 360),
                computed_lonlat=(float(comp[0]), float(comp[1])),
                computed_altitude=alt_true + float(rng.normal(0, 0.3)),
                computed_compass=float((heading + rng.normal(0, 0.5)) % 360),
            )
    return out

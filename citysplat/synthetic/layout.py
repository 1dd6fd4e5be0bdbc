"""The plan of a generated city in its local ENU frame: streets, blocks, buildings, cars, people.

Everything here is plain geometry in metres (x east, y north, z up; the roadway at z = 0, the
blocks with their sidewalks raised by ``spec.kerb_height``) drawn from a seeded generator, so the
same spec always yields the same city.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from citysplat.synthetic.spec import CitySpec

ROADWAY_HALF = 6.0  # centreline to kerb
LANE_OFFSET = 2.2  # centreline to the middle of a driving lane
PARKING_OFFSET = 4.95  # centreline to the middle of a parked car


@dataclass(frozen=True)
class Street:
    """A straight street centreline from ``a`` to ``b`` (x, y) with its name."""

    name: str
    a: tuple[float, float]
    b: tuple[float, float]
    axis: str  # "ns" (an avenue) or "ew" (a street)

    @property
    def length(self) -> float:
        return float(np.hypot(self.b[0] - self.a[0], self.b[1] - self.a[1]))

    @property
    def direction(self) -> np.ndarray:
        d = np.subtract(self.b, self.a)
        return d / np.linalg.norm(d)


@dataclass(frozen=True)
class Building:
    """A box building: its footprint corners (counter-clockwise), height and street-facing side."""

    index: int
    corners: np.ndarray  # (4, 2) x, y, counter-clockwise
    height: float
    front: int  # index i of the corner pair (i, i+1) that faces the street
    style_seed: int
    color: tuple[float, float, float]

    @property
    def front_edge(self) -> tuple[np.ndarray, np.ndarray]:
        i = self.front
        return self.corners[i], self.corners[(i + 1) % 4]


@dataclass(frozen=True)
class Box:
    """An oriented box standing on the ground: centre (x, y), heading (rad from +x), size."""

    x: float
    y: float
    yaw: float
    length: float
    width: float
    height: float
    z0: float = 0.0


@dataclass(frozen=True)
class Mover:
    """Something that moves along a street between captures (a car or a pedestrian)."""

    kind: str  # "car" | "pedestrian"
    street: int  # index into Layout.streets
    offset: float  # signed lateral offset from the centreline (right of a->b is negative)
    forward: bool  # travels a->b when True
    speed: float  # m/s
    phase: float  # metres along the street at t = 0
    size: tuple[float, float, float]  # length, width, height
    color: tuple[float, float, float]
    z0: float = 0.0  # height of the ground it moves on (a sidewalk's kerb height for people)
    road_spans: tuple[tuple[float, float], ...] = ()  # stretches (metres from a) at road level

    def box_at(self, street: Street, t_seconds: float) -> Box:
        """Where this mover stands at a capture time (it wraps around at the street's ends)."""
        s = (self.phase + self.speed * t_seconds) % street.length
        if not self.forward:
            s = street.length - s
        d = street.direction
        normal = np.array([-d[1], d[0]])
        p = np.asarray(street.a) + d * s + normal * self.offset
        yaw = float(np.arctan2(d[1], d[0])) + (0.0 if self.forward else np.pi)
        on_road = any(lo <= s < hi for lo, hi in self.road_spans)  # crossing a street
        return Box(float(p[0]), float(p[1]), yaw, *self.size, z0=0.0 if on_road else self.z0)


@dataclass
class Layout:
    """The whole plan: street grid, buildings, parked cars, trees, poles and movers."""

    spec: CitySpec
    avenues_x: np.ndarray  # x of the north-south centrelines
    streets_y: np.ndarray  # y of the east-west centrelines
    streets: list[Street]
    buildings: list[Building]
    parked_cars: list[Box]
    trees: list[tuple[float, float, float]]  # x, y, crown radius
    poles: list[tuple[float, float]]
    movers: list[Mover]
    car_colors: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def blocks(self) -> tuple[np.ndarray, np.ndarray]:
        """The blocks at their building lines: see :func:`block_intervals`."""
        return block_intervals(self.spec)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the street network."""
        return (
            float(self.avenues_x[0]),
            float(self.streets_y[0]),
            float(self.avenues_x[-1]),
            float(self.streets_y[-1]),
        )


_PASTELS = np.array(
    [
        [0.93, 0.89, 0.80], [0.85, 0.90, 0.92], [0.95, 0.85, 0.78], [0.82, 0.87, 0.78],
        [0.92, 0.92, 0.90], [0.88, 0.80, 0.86], [0.97, 0.93, 0.70], [0.78, 0.83, 0.90],
        [0.90, 0.76, 0.70], [0.80, 0.80, 0.76], [0.96, 0.88, 0.88], [0.74, 0.70, 0.66],
    ]
)
_CAR_COLORS = np.array(
    [
        [0.85, 0.85, 0.87], [0.10, 0.10, 0.12], [0.55, 0.56, 0.60], [0.62, 0.08, 0.08],
        [0.10, 0.22, 0.50], [0.92, 0.92, 0.90], [0.20, 0.35, 0.25], [0.75, 0.60, 0.20],
    ]
)


def street_grid(spec: CitySpec) -> tuple[np.ndarray, np.ndarray]:
    """Centreline coordinates of the avenues (x) and streets (y), centred on the origin."""
    pitch_x = spec.block_w + spec.street_w
    pitch_y = spec.block_h + spec.street_w
    xs = np.arange(spec.blocks_x + 1) * pitch_x
    ys = np.arange(spec.blocks_y + 1) * pitch_y
    return xs - xs.mean(), ys - ys.mean()


def block_intervals(spec: CitySpec) -> tuple[np.ndarray, np.ndarray]:
    """The blocks between the streets, at their building lines (``street_w / 2`` from the
    centrelines): x-intervals of the block columns (C, 2) and y-intervals of the block rows
    (R, 2), west to east and south to north. Every (column, row) pair is one block: the grid's
    own blocks plus a ring of outer blocks, so that every street has two sides."""
    xs, ys = street_grid(spec)
    half = spec.street_w / 2
    pitch_x, pitch_y = spec.block_w + spec.street_w, spec.block_h + spec.street_w
    bx = np.concatenate([[xs[0] - pitch_x], xs])  # west edge centreline of each block column
    by = np.concatenate([[ys[0] - pitch_y], ys])
    return (np.column_stack([bx + half, bx + pitch_x - half]),
            np.column_stack([by + half, by + pitch_y - half]))


def crossings(street: Street, avenues_x: np.ndarray, streets_y: np.ndarray) -> list[float]:
    """Where the cross streets meet ``street``: metres from its start ``a``."""
    d = street.direction
    cross = avenues_x if street.axis == "ew" else streets_y
    return [
        float(np.dot((np.array([c, street.a[1]]) if street.axis == "ew"
                      else np.array([street.a[0], c])) - np.asarray(street.a), d))
        for c in cross
    ]


def _pack_side(rng: np.random.Generator, length: float) -> list[tuple[float, float]]:
    """Split a block side into building frontages: (start, width) pairs, small random gaps."""
    out, s = [], 0.0
    while s < length - 4.0:
        w = float(rng.uniform(6.0, 11.5))
        if s + w > length:
            w = length - s
        out.append((s, w))
        s += w + (float(rng.uniform(0.4, 1.6)) if rng.random() < 0.25 else 0.0)
    return out


def _buildings_for_block(
    rng: np.random.Generator, x0: float, y0: float, x1: float, y1: float, start_index: int
) -> list[Building]:
    """Row houses around a block's perimeter, fronts on the street."""
    out: list[Building] = []
    inset = 16.0  # east/west sides start past the north/south corner buildings' depth

    def add(front_a, front_b, inward, depth):
        a, b = np.asarray(front_a), np.asarray(front_b)
        c, d = b + inward * depth, a + inward * depth
        corners = np.array([a, b, c, d])
        # counter-clockwise order with the front edge first (corner 0 -> 1)
        area = 0.5 * np.sum(corners[:, 0] * np.roll(corners[:, 1], -1)
                            - np.roll(corners[:, 0], -1) * corners[:, 1])
        front = 0
        if area < 0:
            corners = corners[::-1].copy()  # (d, c, b, a): the front edge is now b->a, index 2
            front = 2
        out.append(
            Building(
                index=start_index + len(out),
                corners=corners,
                height=float(rng.uniform(6.5, 13.5)),
                front=front,
                style_seed=int(rng.integers(0, 2**31 - 1)),
                color=tuple(float(v) for v in np.clip(
                    _PASTELS[rng.integers(len(_PASTELS))] + rng.normal(0, 0.03, 3), 0, 1)),
            )
        )

    for s, w in _pack_side(rng, x1 - x0):  # south side, facing -y
        add((x0 + s, y0), (x0 + s + w, y0), np.array([0.0, 1.0]), rng.uniform(11, 15))
    for s, w in _pack_side(rng, x1 - x0):  # north side, facing +y
        add((x0 + s, y1), (x0 + s + w, y1), np.array([0.0, -1.0]), rng.uniform(11, 15))
    for s, w in _pack_side(rng, (y1 - y0) - 2 * inset):  # west side, facing -x
        add((x0, y0 + inset + s), (x0, y0 + inset + s + w), np.array([1.0, 0.0]),
            rng.uniform(11, 15))
    for s, w in _pack_side(rng, (y1 - y0) - 2 * inset):  # east side, facing +x
        add((x1, y0 + inset + s), (x1, y0 + inset + s + w), np.array([-1.0, 0.0]),
            rng.uniform(11, 15))
    return out


def make_layout(spec: CitySpec) -> Layout:
    """Draw the city plan from the spec's seed."""
    rng = np.random.default_rng([spec.seed, 1])
    xs, ys = street_grid(spec)
    half = spec.street_w / 2
    reach = 40.0  # centrelines run past the outer intersections into the next blocks
    streets: list[Street] = []
    for i, x in enumerate(xs):
        streets.append(Street(f"{38 + i}th Avenue", (x, ys[0] - reach), (x, ys[-1] + reach), "ns"))
    for j, y in enumerate(ys):
        name = ["Rivera", "Quintara", "Pacheco", "Ortega", "Noriega", "Moraga", "Lawton"][j % 7]
        streets.append(Street(f"{name} Street", (xs[0] - reach, y), (xs[-1] + reach, y), "ew"))

    # Blocks: the inner grid plus a ring of outer blocks so every street has two sides.
    columns, rows = block_intervals(spec)
    buildings: list[Building] = []
    for x0, x1 in columns:
        for y0, y1 in rows:
            buildings += _buildings_for_block(rng, x0, y0, x1, y1, len(buildings))

    parked, trees, poles = [], [], []
    car_colors: list[tuple[float, float, float]] = []
    for street in streets:
        d = street.direction
        normal = np.array([-d[1], d[0]])
        inter = crossings(street, xs, ys)  # the intersections, in metres from a
        for side in (-1.0, 1.0):
            s = float(rng.uniform(2, 8))
            while s < street.length - 5:
                near_corner = min(abs(s - t) for t in inter) < half + 6
                if not near_corner and rng.random() < spec.parked_car_rate * 1.6:
                    p = np.asarray(street.a) + d * s + normal * side * PARKING_OFFSET
                    yaw = float(np.arctan2(d[1], d[0])) + (0 if side < 0 else np.pi)
                    parked.append(Box(float(p[0]), float(p[1]), yaw,
                                      float(rng.uniform(4.0, 4.9)), float(rng.uniform(1.7, 1.9)),
                                      float(rng.uniform(1.4, 1.7))))
                    car_colors.append(tuple(_CAR_COLORS[rng.integers(len(_CAR_COLORS))]))
                    s += float(rng.uniform(5.5, 8.0))
                else:
                    s += float(rng.uniform(5.5, 9.0))
            # street trees and lamp posts on the sidewalk
            s = float(rng.uniform(3, 12))
            while s < street.length - 3:
                if min(abs(s - t) for t in inter) > half + 3:
                    p = np.asarray(street.a) + d * s + normal * side * (ROADWAY_HALF + 1.1)
                    if rng.random() < 0.55:
                        trees.append((float(p[0]), float(p[1]), float(rng.uniform(1.2, 2.2))))
                    else:
                        poles.append((float(p[0]), float(p[1])))
                s += float(rng.uniform(9, 18))

    movers: list[Mover] = []
    for k in range(spec.moving_cars + spec.pedestrians):
        is_car = k < spec.moving_cars
        street_index = int(rng.integers(len(streets)))
        forward = bool(rng.random() < 0.5)
        if is_car:
            offset = -LANE_OFFSET if forward else LANE_OFFSET
            size = (float(rng.uniform(4.0, 4.9)), float(rng.uniform(1.7, 1.9)),
                    float(rng.uniform(1.4, 1.8)))
            color = tuple(_CAR_COLORS[rng.integers(len(_CAR_COLORS))])
            speed = float(rng.uniform(5.0, 11.0))
        else:
            offset = float(rng.choice([-1, 1]) * rng.uniform(7.0, 9.0))
            size = (0.45, 0.55, float(rng.uniform(1.55, 1.9)))
            color = tuple(float(v) for v in rng.uniform(0.05, 0.95, 3))
            speed = float(rng.uniform(1.0, 1.7))
        # people walk on the raised sidewalk and step down to cross the side streets
        z0 = 0.0 if is_car else spec.kerb_height
        spans = () if is_car else tuple(
            (t - ROADWAY_HALF, t + ROADWAY_HALF)
            for t in crossings(streets[street_index], xs, ys))
        movers.append(Mover("car" if is_car else "pedestrian", street_index, offset, forward,
                            speed, float(rng.uniform(0, streets[street_index].length)), size,
                            color, z0=z0, road_spans=spans))
    return Layout(spec, xs, ys, streets, buildings, parked, trees, poles, movers, car_colors)

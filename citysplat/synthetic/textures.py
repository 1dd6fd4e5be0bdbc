"""Procedural textures rich enough for SIFT at several scales, without exact repetition.

Noise fields are sampled at incommensurate scales (so no period shows up in a street), facades
are drawn per building from its own seed (windows, doors, garages, signs, brick, siding,
weathering), and the ground is a function of position (asphalt, markings, kerbs, slabs, grass).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import zoom

FACADE_RES = 0.03  # metres per facade texel


def value_noise(rng: np.random.Generator, size: int, octaves: int = 8) -> np.ndarray:
    """A (size, size) fractal value-noise field in [0, 1], detail down to two texels."""
    out = np.zeros((size, size), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = min(size // 2, 4 * 2**o)
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        out += amp * zoom(grid, size / (cells + 1), order=1)[:size, :size]
        total += amp
        amp *= 0.8
    out /= total
    return (out - out.min()) / max(1e-6, float(out.max() - out.min()))


@dataclass
class NoiseBank:
    """A few noise fields, sampled by world coordinates at incommensurate scales."""

    fields: np.ndarray  # (K, S, S)

    @classmethod
    def make(cls, seed: int, count: int = 4, size: int = 1024) -> NoiseBank:
        rng = np.random.default_rng([seed, 2])
        return cls(np.stack([value_noise(rng, size) for _ in range(count)]))

    def sample(self, k: int, u: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
        """Field ``k`` at world coordinates (u, v) in metres, ``scale`` metres per texel."""
        s = self.fields.shape[1]
        iu = (np.floor(u / scale).astype(np.int64)) % s
        iv = (np.floor(v / scale).astype(np.int64)) % s
        return self.fields[k, iv, iu]

    def multi(self, u: np.ndarray, v: np.ndarray, footprint=None,
              scales=(0.019, 0.053, 0.23, 1.7)) -> np.ndarray:
        """Sum of the fields at several scales, in roughly [-0.6, 0.6].

        ``footprint`` (metres per pixel at each point) band-limits the sum: scales too fine to
        show in a pixel fade out instead of aliasing into noise that differs between views.
        """
        acc = np.zeros(np.shape(u), np.float32)
        weights = (0.35, 0.3, 0.2, 0.15)
        for k, (sc, w) in enumerate(zip(scales, weights)):
            layer = self.sample(k % len(self.fields), u + 13.7 * k, v - 7.1 * k, sc) - 0.5
            acc += w * layer * band(2 * sc, footprint)
        return np.tanh(acc * 6.0) * 0.6  # sharpened: blotches with edges, not soft fog


def band(feature_size: float, footprint) -> np.ndarray | float:
    """How much of a detail of ``feature_size`` metres a pixel of ``footprint`` metres shows:
    0 below one pixel, 1 from two pixels up."""
    if footprint is None:
        return 1.0
    return np.clip(feature_size / footprint - 1.0, 0.0, 1.0)


def _hash01(iu: np.ndarray, iv: np.ndarray, salt, k: int) -> np.ndarray:
    """Deterministic uniform [0, 1) numbers per integer cell (a 64-bit mix, no tables)."""
    h = (iu.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (
        iv.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    ) ^ (np.asarray(salt).astype(np.uint64) * np.uint64(1000003) + np.uint64(k * 7919))
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(29)
    return (h >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def decals(u: np.ndarray, v: np.ndarray, cell: float, density: float, salt) -> np.ndarray:
    """Scattered marks (stains, stickers, patches, bolts): one rectangle in some cells of a
    ``cell``-metre lattice, each its own size and shade. Returns a signed intensity offset."""
    cu, cv = u / cell, v / cell
    iu, iv = np.floor(cu).astype(np.int64), np.floor(cv).astype(np.int64)
    fu, fv = cu - iu, cv - iv
    present = _hash01(iu, iv, salt, 0) < density
    w = 0.15 + 0.6 * _hash01(iu, iv, salt, 1)
    h = 0.15 + 0.6 * _hash01(iu, iv, salt, 2)
    x0 = (1 - w) * _hash01(iu, iv, salt, 3)
    y0 = (1 - h) * _hash01(iu, iv, salt, 4)
    inside = present & (fu >= x0) & (fu < x0 + w) & (fv >= y0) & (fv < y0 + h)
    shade = (_hash01(iu, iv, salt, 5) - 0.5) * 1.2
    return np.where(inside, shade, 0.0).astype(np.float32)


def surface_detail(u: np.ndarray, v: np.ndarray, salt, footprint=None) -> np.ndarray:
    """Marks at three scales (5 cm to 1 m) for any surface: what SIFT locks on to.
    Marks smaller than about a pixel (``footprint``, metres) fade out."""
    return (decals(u, v, 0.13, 0.22, salt) * band(0.06, footprint)
            + decals(u + 0.37, v - 0.11, 0.41, 0.3, salt + 1) * band(0.18, footprint)
            + 0.7 * decals(u - 1.3, v + 0.7, 1.1, 0.35, salt + 2) * band(0.5, footprint))


# --------------------------------------------------------------------------------------------
# Facades
# --------------------------------------------------------------------------------------------


def _rect(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, color) -> None:
    h, w = img.shape[:2]
    x0, x1 = max(0, x0), min(w, x1)
    y0, y1 = max(0, y0), min(h, y1)
    if x1 > x0 and y1 > y0:
        img[y0:y1, x0:x1] = color


def _glass(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Window glass: a dark pane with a sky reflection gradient, curtains and a blotchy interior."""
    yy = np.linspace(0, 1, h)[:, None]
    xx = np.linspace(0, 1, w)[None, :]
    base = np.array([0.16, 0.2, 0.26]) + rng.normal(0, 0.03, 3)
    tilt = rng.uniform(-0.6, 0.6)
    refl = 0.25 * np.clip(1.0 - yy + tilt * (xx - 0.5), 0, 1)
    img = base[None, None, :] + refl[..., None] * np.array([0.8, 0.9, 1.0])
    if rng.random() < 0.6:  # curtains, each window its own
        cw = int(w * rng.uniform(0.15, 0.45))
        cc = rng.uniform(0.3, 0.95, 3)
        folds = 0.85 + 0.15 * np.sin(np.arange(cw) * rng.uniform(0.6, 1.4))[None, :, None]
        side = rng.random() < 0.5
        sl = slice(0, cw) if side else slice(w - cw, w)
        img[:, sl] = cc * folds
    blot = rng.random((max(2, h // 6), max(2, w // 6), 1))
    img += 0.08 * (zoom(blot, (h / blot.shape[0], w / blot.shape[1], 1), order=1)[:h, :w] - 0.5)
    return np.clip(img, 0, 1)


def _window(rng: np.random.Generator, img, x0, y0, ww, wh, frame_color) -> None:
    f = max(2, int(0.07 / FACADE_RES))
    _rect(img, x0 - f, y0 - f, x0 + ww + f, y0 + wh + f, frame_color)
    glass = _glass(rng, wh, ww)
    h, w = img.shape[:2]
    ys, xs = slice(max(0, y0), min(h, y0 + wh)), slice(max(0, x0), min(w, x0 + ww))
    img[ys, xs] = glass[: ys.stop - ys.start, : xs.stop - xs.start]
    # mullions: each window its own division
    cols = int(rng.integers(1, 4))
    rows = int(rng.integers(1, 3))
    m = max(1, int(0.035 / FACADE_RES))
    for c in range(1, cols):
        xm = x0 + c * ww // cols
        _rect(img, xm - m, y0, xm + m, y0 + wh, frame_color)
    for r in range(1, rows):
        ym = y0 + r * wh // rows
        _rect(img, x0, ym - m, x0 + ww, ym + m, frame_color)
    # sill
    _rect(img, x0 - 2 * f, y0 + wh + f, x0 + ww + 2 * f, y0 + wh + 2 * f + 2,
          np.clip(np.asarray(frame_color) * 0.8, 0, 1))


def _sign(rng: np.random.Generator, img, x0, y0, sw, sh) -> None:
    bg = rng.uniform(0.05, 0.95, 3)
    fg = 1.0 - bg if rng.random() < 0.7 else rng.uniform(0, 1, 3)
    _rect(img, x0, y0, x0 + sw, y0 + sh, bg)
    # "letters": glyph-like strokes, unique per sign
    x = x0 + sh // 4
    while x < x0 + sw - sh // 3:
        gw = int(rng.integers(max(3, sh // 5), max(4, sh // 2)))
        for _ in range(int(rng.integers(2, 4))):
            gx = x + int(rng.integers(0, max(1, gw - 2)))
            gy = y0 + sh // 5 + int(rng.integers(0, max(1, sh // 2)))
            if rng.random() < 0.5:
                _rect(img, gx, y0 + sh // 5, gx + max(2, sh // 10), y0 + 4 * sh // 5, fg)
            else:
                _rect(img, x, gy, x + gw, gy + max(2, sh // 10), fg)
        x += gw + int(rng.integers(2, max(3, sh // 4)))


def facade_texture(style_seed: int, width_m: float, height_m: float, color, bank: NoiseBank
                   ) -> np.ndarray:
    """The street front of one building, (H, W, 3) float32 in [0, 1], row 0 at the top."""
    rng = np.random.default_rng(style_seed)
    w = max(8, int(round(width_m / FACADE_RES)))
    h = max(8, int(round(height_m / FACADE_RES)))
    color = np.asarray(color, np.float32)
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float32) * FACADE_RES
    off = rng.uniform(0, 500, 2)
    n = bank.multi(uu + off[0], vv + off[1]) + surface_detail(uu + off[0], vv, style_seed % 997)
    img = color[None, None, :] * (1.0 + 0.5 * n[..., None])

    material = rng.choice(["stucco", "brick", "siding"], p=[0.5, 0.25, 0.25])
    if material == "brick":
        bh, bw = int(0.075 / FACADE_RES) + 0, int(0.22 / FACADE_RES)
        row = (np.arange(h) // max(1, bh))
        mortar_r = (np.arange(h) % max(1, bh)) == 0
        shift = (row % 2) * (bw // 2)
        col = (np.arange(w)[None, :] + shift[:, None]) // max(1, bw)
        brick_rng = np.random.default_rng(style_seed + 1)
        tint = brick_rng.normal(0, 0.07, (row.max() + 2, col.max() + 2))
        base = np.array([0.62, 0.3, 0.22]) * (0.8 + 0.4 * color.mean())
        img = base[None, None, :] * (1 + tint[row[:, None], col][..., None] + 0.4 * n[..., None])
        mortar = mortar_r[:, None] | ((np.arange(w)[None, :] + shift[:, None]) % max(1, bw) == 0)
        img[mortar] = np.array([0.78, 0.76, 0.72])
    elif material == "siding":
        pitch = int(rng.uniform(0.12, 0.2) / FACADE_RES)
        lines = (np.arange(h) % max(2, pitch)) < 2
        img[lines] *= 0.72

    # weathering streaks below windows and a darker base
    streak = bank.sample(1, uu * 0.05 + off[0], vv * 0.9, 0.02)
    img *= (0.92 + 0.08 * streak)[..., None]
    base_h = int(rng.uniform(0.3, 0.7) / FACADE_RES)
    img[h - base_h:] *= 0.7

    frame = np.clip(np.array([0.95, 0.95, 0.93]) - rng.uniform(0, 0.5) * rng.random(3), 0, 1)
    floors = max(1, int(height_m // 3.0))
    ground_h = int(3.0 / FACADE_RES)
    # ground floor: a garage door, an entrance, maybe a shop sign
    gx = int(rng.uniform(0.05, 0.25) * w)
    gw = min(int(rng.uniform(2.4, 2.9) / FACADE_RES), w - gx - 4)
    if gw > 30 and rng.random() < 0.8:
        top = h - int(2.2 / FACADE_RES)
        door = np.asarray(rng.uniform(0.25, 0.95, 3))
        _rect(img, gx, top, gx + gw, h - base_h, door)
        for k in range(top, h - base_h, int(0.3 / FACADE_RES)):
            _rect(img, gx, k, gx + gw, k + 2, door * 0.7)
        if rng.random() < 0.5:  # a row of small garage windows
            for c in range(4):
                _window(rng, img, gx + 8 + c * gw // 4, top + 8, gw // 4 - 16, 12, frame)
    ex = min(w - int(1.2 / FACADE_RES), gx + gw + int(rng.uniform(0.5, 1.5) / FACADE_RES))
    if ex > 0:
        top = h - int(2.3 / FACADE_RES)
        _rect(img, ex - 4, top - 4, ex + int(1.0 / FACADE_RES) + 4, h, frame)
        _rect(img, ex, top, ex + int(1.0 / FACADE_RES), h, rng.uniform(0.05, 0.6, 3))
        # stairs
        for k in range(4):
            y = h - (k + 1) * int(0.17 / FACADE_RES)
            _rect(img, ex - 8 - 3 * k, y, ex + int(1.0 / FACADE_RES) + 8 + 3 * k, y + 3,
                  np.array([0.55, 0.55, 0.55]))
    if rng.random() < 0.35:
        sh = int(rng.uniform(0.4, 0.7) / FACADE_RES)
        _sign(rng, img, int(0.05 * w), h - ground_h - sh // 2, int(0.9 * w), sh)

    # upper floors: windows, each building its own rhythm
    bay = rng.random() < 0.5
    for f in range(1, floors):
        y_floor = h - ground_h - (f - 1) * int(3.0 / FACADE_RES)
        wh = int(rng.uniform(1.2, 1.7) / FACADE_RES)
        y0 = y_floor - int(0.6 / FACADE_RES) - wh
        n_win = max(1, int(width_m // rng.uniform(2.0, 3.2)))
        ww = int(min(rng.uniform(0.9, 1.6), width_m / n_win * 0.7) / FACADE_RES)
        margin = (w - n_win * ww) / (n_win + 1)
        if bay:
            _rect(img, int(margin * 0.5), y0 - 10, w - int(margin * 0.5), y0 + wh + 14,
                  np.clip(color * 0.92, 0, 1))
        for k in range(n_win):
            x0 = int(margin + k * (ww + margin) + rng.integers(-3, 4))
            _window(rng, img, x0, y0 + int(rng.integers(-3, 4)), ww, wh, frame)
    # cornice
    ch = int(rng.uniform(0.2, 0.5) / FACADE_RES)
    img[:ch] = np.clip(frame * 0.9, 0, 1)
    img[ch : ch + 3] *= 0.6
    return np.clip(img, 0, 1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Ground
# --------------------------------------------------------------------------------------------


def ground_color(x: np.ndarray, y: np.ndarray, avenues_x: np.ndarray, streets_y: np.ndarray,
                 street_w: float, bank: NoiseBank, footprint=None) -> np.ndarray:
    """Colour of the ground at world (x, y): asphalt, markings, kerbs, sidewalk slabs, grass."""
    dx = np.min(np.abs(x[..., None] - avenues_x), axis=-1)
    dy = np.min(np.abs(y[..., None] - streets_y), axis=-1)
    half = street_w / 2
    road_ns, road_ew = dx < 6.0, dy < 6.0
    road = road_ns | road_ew
    walk = ~road & ((dx < half) | (dy < half))
    n = bank.multi(x, y, footprint) + surface_detail(x, y, 11, footprint)
    out = np.empty(x.shape + (3,), np.float32)

    # asphalt with patches and grain
    patch = bank.sample(2, x + 311.0, y - 97.0, 0.31)
    asphalt = 0.27 + 0.25 * n + 0.06 * (patch > 0.62)
    out[road] = (asphalt[road, None] * np.array([1.0, 1.0, 1.04]))

    # sidewalk: slabs with joints, stains
    slab_u = np.where(dx < dy, y, x)
    slab_v = np.where(dx < dy, dx, dy)
    joint = ((slab_u % 1.5) < 0.03) | (((slab_v - 6.0) % 1.5) < 0.03)
    concrete = 0.6 + 0.3 * n - 0.25 * joint
    out[walk] = concrete[walk, None] * np.array([1.0, 0.98, 0.94])

    # block interiors: grass and dirt
    rest = ~road & ~walk
    g = 0.5 + 0.5 * n[rest]
    out[rest] = np.stack([0.22 + 0.2 * g, 0.38 + 0.2 * g, 0.15 + 0.1 * g], -1)

    # kerb
    kerb = ((dx >= 5.85) & (dx < 6.15) & ~road_ew) | ((dy >= 5.85) & (dy < 6.15) & ~road_ns)
    out[kerb] = np.array([0.75, 0.75, 0.72])

    # centre line: dashed yellow on avenues, double yellow on streets, away from intersections
    dash_ns = road_ns & ~road_ew & (dx < 0.08) & ((y % 6.0) < 3.0)
    double_ew = road_ew & ~road_ns & (np.abs(dy - 0.15) < 0.06)
    out[dash_ns | double_ew] = np.array([0.85, 0.7, 0.15])
    # crosswalks: zebra bars just outside each intersection
    zebra_ns = road_ns & (dy >= 6.5) & (dy < 9.5) & (((x + 50.0) % 1.0) < 0.5)
    zebra_ew = road_ew & (dx >= 6.5) & (dx < 9.5) & (((y + 50.0) % 1.0) < 0.5)
    stop = (road_ns & (dy >= 9.6) & (dy < 10.0)) | (road_ew & (dx >= 9.6) & (dx < 10.0))
    white = (zebra_ns | zebra_ew | stop) & ~(road_ns & road_ew)
    out[white] = (0.85 + 0.08 * n[white])[:, None] * np.array([1.0, 1.0, 1.0])
    return np.clip(out, 0, 1)


def sky_color(directions: np.ndarray) -> np.ndarray:
    """A clear sky: light at the horizon, blue at the zenith (no features to match)."""
    up = np.clip(directions[..., 2], 0, 1)
    horizon = np.array([0.86, 0.9, 0.95], np.float32)
    zenith = np.array([0.35, 0.55, 0.85], np.float32)
    t = np.sqrt(up)[..., None]
    return horizon * (1 - t) + zenith * t

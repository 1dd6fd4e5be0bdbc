"""Gaussian splats to and from Niantic's SPZ file, stored in SPZ's RUB axes.

What the format is, as read in Niantic's reference code (repository ``nianticlabs/spz``:
``src/cc/load-spz.cc`` for packing, unpacking and (de)serialising, ``src/cc/load-spz.h`` for the
constants, ``src/cc/splat-utils.h`` for ``colorScale``, ``unquantizeSH`` and the quaternion
decoders, ``src/cc/splat-types.h`` for the coordinate systems and their conversions). This
module writes and reads the "legacy" container, versions 2 and 3, which every SPZ reader
accepts; the reference library's newest version 4 (a 32-byte plain header, a table of contents
and one zstd stream per attribute) is recognised and refused with an explanation.

The whole file is one gzip stream (``compressGzipped``: deflate, default level, gzip wrapper).
Decompressed, it is a 16-byte little-endian header (``LegacyPackedGaussiansHeader``)::

    uint32 magic = 0x5053474e ("NGSP")   uint32 version (2 or 3)   uint32 numPoints
    uint8 shDegree (0..3)   uint8 fractionalBits   uint8 flags (0x1 antialiased,
    0x2 extensions follow the data)   uint8 reserved (0)

followed by the attributes, each for all points in turn (``serializePackedGaussians``):

- positions, ``9 N`` bytes: x, y, z as 24-bit signed little-endian fixed point,
  ``round(value * 2^fractionalBits)`` (``std::round``: halves away from zero; the reference
  keeps the low 24 bits without a range check, so a coordinate beyond
  ``±2^23 / 2^fractionalBits`` wraps around: :func:`write_spz` refuses those). The reference
  writer uses 12 fractional bits (0.24 mm steps, ``±2048 m``); readers take the header's value.
- alphas, ``N`` bytes: ``round(sigmoid(opacity_logit) * 255)``; read back as
  ``log(a / (1 - a))`` with ``a = byte / 255``.
- colours, ``3 N`` bytes: ``round(sh0 * (0.15 * 255) + 0.5 * 255)`` (``colorScale = 0.15``, a
  "wide" range: colour ``0.5 + 0.2821 * sh0`` from about -0.44 to 1.44); read back as
  ``(byte / 255 - 0.5) / 0.15``.
- scales, ``3 N`` bytes: ``round((log_scale + 10) * 16)`` (natural-log standard deviations
  from -10 to 5.94 in steps of 1/16); read back as ``byte / 16 - 10``.
- rotations, the quaternion normalised, in x y z w order: version 2 stores 3 bytes
  ``round(xyz * ±127.5 + 127.5)`` with the sign chosen so that w >= 0 (w is rebuilt as
  ``sqrt(1 - |xyz|^2)``); version 3 ("smallest three", 4 bytes, a little-endian uint32): the
  index of the largest-magnitude component in the top 2 bits, then the other three in order,
  10 bits each: a sign bit (relative to the largest, which is made positive) and the magnitude
  ``floor(511 * |q_i| / sqrt(1/2) + 0.5)``; the largest is rebuilt from the unit norm.
- SH, ``3 N (K - 1)`` bytes, per point coefficient-major with the colour channel fastest (the
  memory order of gsplat's ``shN`` ``[N, K-1, 3]``): ``q = round(x * 128) + 128``, then
  snapped to a bucket centre, ``(q + b/2) / b * b`` in C integer division, clamped to 0..255,
  with buckets ``b = 8`` (5 bits kept) for the degree-1 coefficients and ``b = 16`` (4 bits) for
  degrees 2 and 3 (``DEFAULT_SH1_BITS``, ``DEFAULT_SH_REST_BITS``); read back as
  ``(byte - 128) / 128``.

The reference computes these in float32 and so does this module (rounding in float64, halves
away from zero), so the bytes agree with the reference writer's except where float32 arithmetic
order differs at an exact rounding boundary.

Axes. SPZ stores "RUB" (x right, y up, z back: ``CoordinateSystem::RUB``); the reference
converts to it on save and from it on load. Our district frame is ENU (x east, y north, z up),
which is the reference's ``RFU`` (right, front, up). ``coordinateConverter(RFU, RUB)`` is a
rotation ``R_x(-90°)``: positions ``(E, N, U) -> (E, U, -N)`` (the glTF mapping of this project
too), quaternions ``q' = r * q`` with ``r = (cos -45°, sin -45°, 0, 0)`` (wxyz), and the SH
coefficients of each degree by that rotation's SH matrix (``kAnalyticRotateMinusPiHalfAboutXTable``).
:func:`enu_to_rub` does the same; its SH matrices are computed numerically
(:func:`sh_rotation_matrices`, a least-squares fit of the real SH basis at directions on a
sphere) and equal the reference's analytic table.

Deviations, both on reading: an alpha byte of 0 or 255 decodes to the logit of ``1e-6`` or
``1 - 1e-6`` (finite, as gsply does) where the reference gives -inf / +inf; trailing bytes after
the attributes (extensions, flag 0x2) are skipped, as the reference does without extension
support.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citysplat.io import atomic_write_bytes
from citysplat.splat.export import SplatArrays, sh_degree_of

__all__ = [
    "ENU_TO_RUB",
    "SpzInfo",
    "choose_fractional_bits",
    "enu_to_rub",
    "read_spz",
    "rub_to_enu",
    "sh_rotation_matrices",
    "spz_info",
    "write_spz",
]

NGSP_MAGIC = 0x5053474E  # b"NGSP" little-endian
SUPPORTED_VERSIONS = (2, 3)
MAX_SH_DEGREE = 3
COLOR_SCALE = 0.15
DEFAULT_FRACTIONAL_BITS = 12  # the reference writer's value: 1/4096 m steps, +-2048 m
MAX_FRACTIONAL_BITS = 24  # gsply's reader accepts 1..24
SH1_BUCKET = 1 << (8 - 5)  # 5 bits kept for degree 1
SH_REST_BUCKET = 1 << (8 - 4)  # 4 bits kept for degrees 2 and 3
FLAG_ANTIALIASED = 0x1

_HEADER = struct.Struct("<IIIBBBB")  # 16 bytes
_FIXED_MAX = (1 << 23) - 1
_FIXED_MIN = -(1 << 23)
_ALPHA_EPS = 1e-6
_SQRT1_2 = np.float32(0.707106781186547524401)

# ENU (x east, y north, z up) to RUB (x right = east, y up, z back = south): a rotation
# R_x(-90 degrees), as a matrix acting on column vectors, and as a unit quaternion (wxyz).
ENU_TO_RUB = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
ENU_TO_RUB.setflags(write=False)
_Q_ENU_TO_RUB = np.array([math.sqrt(0.5), -math.sqrt(0.5), 0.0, 0.0])


@dataclass(frozen=True)
class SpzInfo:
    """What an SPZ file holds: its header, and its size on disk in bytes."""

    points: int
    sh_degree: int
    fractional_bits: int
    bytes: int
    version: int
    antialiased: bool = False

    @property
    def position_step_m(self) -> float:
        """The fixed-point step of the positions in metres (the largest error is half of it)."""
        return 2.0 ** -self.fractional_bits

    @property
    def position_range_m(self) -> float:
        """The largest coordinate magnitude the file's fixed point holds, in metres."""
        return _FIXED_MAX * self.position_step_m


# ----------------------------------------------------------------------------------------------
# Axes


def _sh_basis(dirs: np.ndarray, degree: int) -> list[np.ndarray]:
    """The real SH basis of degrees 1..degree at unit ``dirs`` [M, 3], one [M, 2l+1] array per
    degree, with gsplat's (and Inria 3DGS's) constants, signs and order."""
    x, y, z = dirs[:, 0], dirs[:, 1], dirs[:, 2]
    xx, yy, zz = x * x, y * y, z * z
    c1 = 0.4886025119029199
    c2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
          0.5462742152960396)
    c3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
          -0.4570457994644658, 1.445305721320277, -0.5900435899266435)
    bands = [
        np.stack([-c1 * y, c1 * z, -c1 * x], axis=1),
        np.stack([c2[0] * x * y, c2[1] * y * z, c2[2] * (2 * zz - xx - yy), c2[3] * x * z,
                  c2[4] * (xx - yy)], axis=1),
        np.stack([c3[0] * y * (3 * xx - yy), c3[1] * x * y * z, c3[2] * y * (4 * zz - xx - yy),
                  c3[3] * z * (2 * zz - 3 * xx - 3 * yy), c3[4] * x * (4 * zz - xx - yy),
                  c3[5] * z * (xx - yy), c3[6] * x * (xx - 3 * yy)], axis=1),
    ]
    return bands[:degree]


def sh_rotation_matrices(rotation: np.ndarray, degree: int = MAX_SH_DEGREE) -> list[np.ndarray]:
    """For a 3x3 rotation ``R``, the matrices ``M_l`` (degrees 1..``degree``, ``[2l+1, 2l+1]``)
    that rotate SH coefficients: with ``c' = M_l c``, the colour of direction ``R d`` from
    ``c'`` equals the colour of direction ``d`` from ``c``.

    Computed by least squares: the basis at directions ``d'`` times ``M_l`` must equal the basis
    at ``R^T d'``, at 96 directions spread over the sphere (exact up to rounding, ~1e-15).
    """
    rot = np.asarray(rotation, dtype=np.float64)
    if rot.shape != (3, 3) or not np.allclose(rot @ rot.T, np.eye(3), atol=1e-9):
        raise ValueError(f"rotation must be an orthogonal 3x3 matrix, got {rot.tolist()}")
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"SH degree must be 0..{MAX_SH_DEGREE}, got {degree}")
    m = 96  # Fibonacci sphere: well spread, deterministic
    i = np.arange(m) + 0.5
    z = 1.0 - 2.0 * i / m
    r = np.sqrt(1.0 - z * z)
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    dirs = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    after = _sh_basis(dirs, degree)
    before = _sh_basis(dirs @ rot, degree)  # rows R^T d'
    return [np.linalg.lstsq(a, b, rcond=None)[0] for a, b in zip(after, before)]


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of wxyz quaternions (broadcasting)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], axis=-1)


def _rotate(splats: SplatArrays, rot: np.ndarray, q_rot: np.ndarray) -> SplatArrays:
    """Splats rotated by the matrix ``rot`` (= quaternion ``q_rot``): means, quats and SH."""
    sh_n = np.asarray(splats.shN, dtype=np.float64)
    out = np.empty_like(sh_n)
    for level, mat in enumerate(sh_rotation_matrices(rot, splats.sh_degree), start=1):
        band = slice(level * level - 1, (level + 1) * (level + 1) - 1)
        out[:, band] = np.einsum("ij,njc->nic", mat, sh_n[:, band])
    return SplatArrays(
        means=(np.asarray(splats.means, np.float64) @ rot.T).astype(np.float32),
        scales_log=np.array(splats.scales_log, dtype=np.float32),
        quats=_quat_mul(q_rot, np.asarray(splats.quats, np.float64)).astype(np.float32),
        opacities_logit=np.array(splats.opacities_logit, dtype=np.float32),
        sh0=np.array(splats.sh0, dtype=np.float32),
        shN=out.astype(np.float32),
    )


def enu_to_rub(splats: SplatArrays) -> SplatArrays:
    """Splats in ENU (x east, y north, z up) re-expressed in SPZ's RUB axes, ``(E, U, -N)``.

    Means and orientations are rotated by ``R_x(-90°)`` (quaternion ``r * q``, scales stay with
    their local axes) and the SH coefficients by that rotation's SH matrices, so a splat seen
    from direction ``R d`` in RUB has the colour it had from ``d`` in ENU.
    """
    return _rotate(splats, ENU_TO_RUB, _Q_ENU_TO_RUB)


def rub_to_enu(splats: SplatArrays) -> SplatArrays:
    """The inverse of :func:`enu_to_rub`: splats in RUB axes back in ENU, ``(x, -z, y)``."""
    inverse = _Q_ENU_TO_RUB * np.array([1.0, -1.0, -1.0, -1.0])
    return _rotate(splats, ENU_TO_RUB.T, inverse)


# ----------------------------------------------------------------------------------------------
# Writing


def _round(x: np.ndarray) -> np.ndarray:
    """``std::round``: to the nearest integer, halves away from zero (float64 result)."""
    x = np.asarray(x, dtype=np.float64)
    return np.copysign(np.floor(np.abs(x) + 0.5), x)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """The reference's ``toUint8``: rounded and clamped to 0..255."""
    return np.clip(_round(x), 0, 255).astype(np.uint8)


def choose_fractional_bits(means: np.ndarray) -> int:
    """The fractional bits :func:`write_spz` picks for ``means`` [N, 3] (metres, either frame:
    the axes change, not the magnitudes): the reference's 12 (0.24 mm steps) when the largest
    coordinate magnitude stays within half the 24-bit range (1024 m), else the most bits that
    keep that factor-of-2 margin (11 up to 2048 m, 10 up to 4096 m, 9 up to 8192 m: still
    under 1 mm error). ValueError when even 1 bit cannot hold them."""
    means = np.asarray(means, dtype=np.float32)
    extent = float(np.max(np.abs(means))) if means.size else 0.0
    for bits in range(DEFAULT_FRACTIONAL_BITS, 0, -1):
        if 2.0 * _round(extent * 2.0**bits) <= _FIXED_MAX:
            return bits
    raise ValueError(
        f"positions reach {extent:.6g} m from the origin; SPZ's 24-bit fixed point holds at most "
        f"±{_FIXED_MAX / 2:.6g} m (1 fractional bit, with margin): subtract a local origin "
        "(the district's ENU frame) before writing"
    )


def _fixed_point(means_rub: np.ndarray, bits: int) -> np.ndarray:
    """Positions as 24-bit little-endian two's complement, ``[N * 9]`` bytes."""
    fixed = _round(means_rub.astype(np.float32) * np.float32(2.0**bits)).astype(np.int64)
    low, high = int(fixed.min(initial=0)), int(fixed.max(initial=0))
    if low < _FIXED_MIN or high > _FIXED_MAX:
        extent = float(np.max(np.abs(means_rub)))
        fits = [b for b in range(MAX_FRACTIONAL_BITS + 1) if extent * 2.0**b <= _FIXED_MAX - 1]
        hint = f"fractional_bits <= {fits[-1]}" if fits else "a local origin"
        raise ValueError(
            f"positions reach {extent:.6g} m from the origin, beyond the ±{_FIXED_MAX / 2**bits:.6g}"
            f" m that {bits} fractional bits hold in 24-bit fixed point: use {hint}, or "
            "fractional_bits=None to choose automatically"
        )
    as_bytes = fixed.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
    return np.ascontiguousarray(as_bytes).reshape(-1)


def _pack_quats_first_three(q: np.ndarray) -> np.ndarray:
    """Version 2: ``[N, 3]`` bytes of the normalised xyzw quaternion's xyz, w made >= 0."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    sign = np.where(q[:, 3] < 0, np.float32(-127.5), np.float32(127.5))
    return _to_uint8(q[:, :3] * sign[:, None] + np.float32(127.5))


def _pack_quats_smallest_three(q: np.ndarray) -> np.ndarray:
    """Version 3: ``[N, 4]`` bytes, the "smallest three" uint32 of each normalised xyzw
    quaternion (largest's index in the top 2 bits, then 3 x (sign bit, 9-bit magnitude))."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    n = q.shape[0]
    largest = np.argmax(np.abs(q), axis=1)  # first of equals, as the reference's strict '>'
    negate = q[np.arange(n), largest] < 0
    comp = largest.astype(np.uint32)
    for i in range(4):
        keep = largest != i
        negbit = ((q[:, i] < 0) ^ negate).astype(np.uint32)
        scaled = np.float32(511.0) * (np.abs(q[:, i]) / _SQRT1_2) + np.float32(0.5)
        mag = np.minimum(np.floor(scaled.astype(np.float64)), 511).astype(np.uint32)
        comp = np.where(keep, (comp << np.uint32(10)) | (negbit << np.uint32(9)) | mag, comp)
    return comp.astype("<u4").view(np.uint8).reshape(n, 4)


def _quantize_sh(x: np.ndarray, bucket: int) -> np.ndarray:
    """The reference's ``quantizeSH``: 8 bits around 128, snapped to a bucket centre."""
    q = _round(x.astype(np.float32) * np.float32(128.0)).astype(np.int64) + 128
    t = q + bucket // 2
    t = np.where(t >= 0, t // bucket, -((-t) // bucket)) * bucket  # C's truncating division
    return np.clip(t, 0, 255).astype(np.uint8)


def _checked(splats: SplatArrays) -> SplatArrays:
    """The splats as float32 arrays of the right shapes, finite, with usable quaternions."""
    means = np.asarray(splats.means)
    n = means.shape[0] if means.ndim == 2 else -1

    def arr(name: str, value: object, shape: tuple[int | None, ...]) -> np.ndarray:
        a = np.asarray(value)
        if a.dtype.kind not in "fiu":
            raise ValueError(f"splats.{name} must hold real numbers, got dtype {a.dtype}")
        if a.ndim != len(shape) or any(s is not None and d != s
                                       for d, s in zip(a.shape[1:], shape[1:])):
            want = ", ".join(["N"] + ["*" if s is None else str(s) for s in shape[1:]])
            raise ValueError(f"splats.{name} must have shape [{want}], got {list(a.shape)}")
        if n >= 0 and a.shape[0] != n:
            raise ValueError(f"splats.{name} has {a.shape[0]} rows but means has {n}: all "
                             "arrays need one row per splat")
        with np.errstate(over="ignore"):
            a = a.astype(np.float32)
        bad = ~np.isfinite(a).all(axis=tuple(range(1, a.ndim)))
        if bad.any():
            raise ValueError(f"splats.{name} has NaN or inf in {int(bad.sum())} row(s), "
                             f"first at row {int(np.flatnonzero(bad)[0])}")
        return a

    m = arr("means", means, (None, 3))
    if n == 0:
        raise ValueError("no splats to write: SPZ readers reject a file of 0 points")
    quats = arr("quats", splats.quats, (None, 4))
    zero = np.linalg.norm(quats.astype(np.float64), axis=1) < 1e-12
    if zero.any():
        raise ValueError(f"splats.quats has {int(zero.sum())} zero quaternion(s), first at row "
                         f"{int(np.flatnonzero(zero)[0])}: a rotation needs a non-zero quaternion")
    opacities = np.asarray(splats.opacities_logit)
    if opacities.ndim == 2 and opacities.shape[1:] == (1,):
        opacities = opacities[:, 0]
    sh0 = np.asarray(splats.sh0)
    if sh0.ndim == 2:
        sh0 = sh0[:, None, :]
    sh_n = arr("shN", splats.shN, (None, None, 3))
    try:
        degree = sh_degree_of(sh_n.shape[1])
    except ValueError as exc:
        raise ValueError(f"splats.shN: {exc}") from None
    if degree > MAX_SH_DEGREE:
        raise ValueError(f"SH degree {degree} does not fit SPZ versions 2 and 3 (degree <= "
                         f"{MAX_SH_DEGREE}): keep the first 15 coefficients, shN[:, :15]")
    return SplatArrays(
        means=m,
        scales_log=arr("scales_log", splats.scales_log, (None, 3)),
        quats=quats,
        opacities_logit=arr("opacities_logit", opacities, (None,)),
        sh0=arr("sh0", sh0, (None, 1, 3)),
        shN=sh_n,
    )


def write_spz(
    path: str | os.PathLike[str],
    splats: SplatArrays,
    *,
    fractional_bits: int | None = None,
    version: int = 3,
    antialiased: bool = False,
) -> SpzInfo:
    """Write ENU splats as an SPZ file (RUB axes inside, layout in the module docstring).

    ``fractional_bits`` None picks them from the extent (:func:`choose_fractional_bits`: 12, the
    reference's, for anything within 1024 m of the origin); a given value is checked against
    the extent (ValueError naming the largest that fits). ``version`` 3 (smallest-three
    rotations, the default) or 2 (3-byte rotations, for old viewers). ``antialiased`` sets the
    header flag for splats trained with gsplat's antialiased (mip-splatting) mode. SH degree is
    at most 3. The file lands atomically (old file or new one after a crash).
    """
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"SPZ version {version} cannot be written: choose 3 (default) or 2")
    s = _checked(splats)
    if fractional_bits is None:
        bits = choose_fractional_bits(s.means)
    else:
        if isinstance(fractional_bits, bool) or not isinstance(fractional_bits, int | np.integer):
            raise ValueError(f"fractional_bits must be an integer or None, got {fractional_bits!r}")
        bits = int(fractional_bits)
        if not 1 <= bits <= MAX_FRACTIONAL_BITS:
            raise ValueError(
                f"fractional_bits must be 1..{MAX_FRACTIONAL_BITS} (or None), got {bits}"
            )
    rub = enu_to_rub(s)
    n, degree = rub.num_splats, rub.sh_degree
    positions = _fixed_point(rub.means, bits)
    with np.errstate(over="ignore"):  # exp overflow for very negative logits gives alpha 0
        alpha = np.float32(1.0) / (np.float32(1.0) + np.exp(-rub.opacities_logit))
    alphas = _to_uint8(alpha * np.float32(255.0))
    colors = _to_uint8(rub.sh0.reshape(n, 3) * np.float32(COLOR_SCALE * 255.0) + np.float32(127.5))
    scales = _to_uint8((rub.scales_log + np.float32(10.0)) * np.float32(16.0))
    xyzw = np.roll(rub.quats, -1, axis=1)
    if version >= 3:
        rotations = _pack_quats_smallest_three(xyzw)
    else:
        rotations = _pack_quats_first_three(xyzw)
    sh = np.empty(rub.shN.shape, dtype=np.uint8)
    sh[:, :3] = _quantize_sh(rub.shN[:, :3], SH1_BUCKET)
    sh[:, 3:] = _quantize_sh(rub.shN[:, 3:], SH_REST_BUCKET)
    flags = FLAG_ANTIALIASED if antialiased else 0
    header = _HEADER.pack(NGSP_MAGIC, version, n, degree, bits, flags, 0)
    raw = b"".join(
        [header, positions.tobytes(), alphas.tobytes(), colors.tobytes(), scales.tobytes(),
         rotations.tobytes(), sh.tobytes()]
    )
    data = gzip.compress(raw, compresslevel=6, mtime=0)
    atomic_write_bytes(Path(path), data)
    return SpzInfo(points=n, sh_degree=degree, fractional_bits=bits, bytes=len(data),
                   version=version, antialiased=bool(antialiased))


# ----------------------------------------------------------------------------------------------
# Reading


def _container(data: bytes, name: str) -> None:
    """ValueError unless ``data`` starts like a legacy (gzip) SPZ file."""
    if data[:2] == b"\x1f\x8b":
        return
    if len(data) >= 8 and struct.unpack_from("<I", data)[0] == NGSP_MAGIC:
        version = struct.unpack_from("<I", data, 4)[0]
        raise ValueError(
            f"{name}: SPZ version {version} (uncompressed header with zstd streams, the newest "
            "container) is not supported; this reader handles versions 2 and 3: re-save it as "
            "version 3 (Niantic's spz PackOptions.version = 3, gsply write_spz(version=3))"
        )
    if not data:
        raise ValueError(f"{name}: empty file, not an SPZ file")
    raise ValueError(
        f"{name}: not an SPZ file (an SPZ file is gzip-compressed, starting with bytes 1f 8b; "
        f"this one starts with {data[:8].hex(' ')})"
    )


def _parse_header(raw: bytes, name: str) -> tuple[int, int, int, int, int]:
    """(version, points, sh degree, fractional bits, flags) from decompressed bytes."""
    if len(raw) < _HEADER.size:
        raise ValueError(f"{name}: truncated: {len(raw)} bytes after decompression, less than "
                         f"the {_HEADER.size}-byte SPZ header")
    magic, version, n, degree, bits, flags, _ = _HEADER.unpack_from(raw)
    if magic != NGSP_MAGIC:
        raise ValueError(f"{name}: a gzip file but not SPZ: magic {magic:#010x}, expected "
                         f"{NGSP_MAGIC:#010x} ('NGSP')")
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"{name}: SPZ version {version} is not supported (this reader handles "
                         "versions 2 and 3): re-save it as version 3")
    if degree > MAX_SH_DEGREE:
        raise ValueError(f"{name}: SH degree {degree} is not supported by SPZ versions 2 and 3 "
                         f"(at most {MAX_SH_DEGREE}): the file is corrupt or from a newer writer")
    return version, n, degree, bits, flags


def _read_raw(path: Path) -> bytes:
    """The decompressed bytes of a legacy SPZ file (header and attributes)."""
    data = path.read_bytes()
    _container(data, path.name)
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path.name}: truncated or corrupt gzip stream ({exc}): the file is "
                         "incomplete; write or download it again") from None


def spz_info(path: str | os.PathLike[str]) -> SpzInfo:
    """The header of an SPZ file (versions 2 and 3) and its size, without decoding splats."""
    path = Path(path)
    data = path.read_bytes()
    _container(data, path.name)
    try:
        head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, _HEADER.size)
    except zlib.error as exc:
        raise ValueError(f"{path.name}: corrupt gzip stream ({exc})") from None
    version, n, degree, bits, flags = _parse_header(head, path.name)
    return SpzInfo(points=n, sh_degree=degree, fractional_bits=bits, bytes=len(data),
                   version=version, antialiased=bool(flags & FLAG_ANTIALIASED))


def _unpack_quats_first_three(b: np.ndarray) -> np.ndarray:
    xyz = b.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    w = np.sqrt(np.maximum(np.float32(0.0), np.float32(1.0) - np.sum(xyz * xyz, axis=1)))
    return np.concatenate([xyz, w[:, None]], axis=1)


def _unpack_quats_smallest_three(b: np.ndarray) -> np.ndarray:
    comp = np.ascontiguousarray(b).view("<u4").reshape(-1).astype(np.uint32)
    n = comp.shape[0]
    largest = (comp >> np.uint32(30)).astype(np.int64)
    q = np.zeros((n, 4), dtype=np.float32)
    sum_sq = np.zeros(n, dtype=np.float32)
    for i in range(3, -1, -1):  # the last stored component sits in the lowest bits
        keep = largest != i
        mag = (comp & np.uint32(511)).astype(np.float32)
        neg = ((comp >> np.uint32(9)) & np.uint32(1)).astype(bool)
        value = _SQRT1_2 * mag / np.float32(511.0)
        value = np.where(neg, -value, value)
        q[:, i] = np.where(keep, value, 0.0)
        sum_sq += np.where(keep, value * value, np.float32(0.0))
        comp = np.where(keep, comp >> np.uint32(10), comp)
    q[np.arange(n), largest] = np.sqrt(np.maximum(np.float32(0.0), np.float32(1.0) - sum_sq))
    return q


def read_spz(path: str | os.PathLike[str]) -> SplatArrays:
    """Read an SPZ file (versions 2 and 3, any writer) into ENU :class:`SplatArrays`.

    Values are the quantized ones (see the module docstring for the steps); quaternions come
    back normalised. Not an SPZ file, a truncated one, version 4 or 1, or an SH degree above 3
    raise ValueError saying so.
    """
    path = Path(path)
    raw = _read_raw(path)
    version, n, degree, bits, _flags = _parse_header(raw, path.name)
    k = (degree + 1) ** 2 - 1
    rot_bytes = 4 if version >= 3 else 3
    sizes = [9 * n, n, 3 * n, 3 * n, rot_bytes * n, 3 * k * n]
    need = _HEADER.size + sum(sizes)
    if len(raw) < need:
        raise ValueError(
            f"{path.name}: truncated: the header announces {n} points at SH degree {degree} "
            f"({need} bytes decompressed) but the file holds {len(raw)}: it is incomplete"
        )
    buf = np.frombuffer(raw, dtype=np.uint8, count=need - _HEADER.size, offset=_HEADER.size)
    parts = np.split(buf, np.cumsum(sizes)[:-1])
    pos, alpha, color, scale, rot, sh = parts

    p = pos.reshape(n, 3, 3).astype(np.int32)
    fixed = p[..., 0] | (p[..., 1] << 8) | (p[..., 2] << 16)
    fixed = fixed - ((fixed & 0x800000) << 1)  # sign extension of 24 bits
    means = fixed.astype(np.float32) * np.float32(1.0 / (1 << bits))

    a = np.clip(alpha.astype(np.float32) / np.float32(255.0), _ALPHA_EPS, 1.0 - _ALPHA_EPS)
    opacities = np.log(a / (np.float32(1.0) - a)).astype(np.float32)
    sh0 = (color.astype(np.float32) / np.float32(255.0) - np.float32(0.5)) / np.float32(COLOR_SCALE)
    scales = scale.reshape(n, 3).astype(np.float32) / np.float32(16.0) - np.float32(10.0)
    if version >= 3:
        xyzw = _unpack_quats_smallest_three(rot.reshape(n, 4))
    else:
        xyzw = _unpack_quats_first_three(rot.reshape(n, 3))
    sh_n = (sh.reshape(n, k, 3).astype(np.float32) - np.float32(128.0)) / np.float32(128.0)

    rub = SplatArrays(
        means=means,
        scales_log=scales,
        quats=np.roll(xyzw, 1, axis=1),
        opacities_logit=opacities,
        sh0=sh0.reshape(n, 1, 3).astype(np.float32),
        shN=sh_n,
    )
    return rub_to_enu(rub)

"""Gaussian splats to and from PlayCanvas's compressed PLY (SuperSplat, splat-transform, Spark).

The layout follows the writer and reader of ``@playcanvas/splat-transform`` (the tool SuperSplat
exports with), read in ``playcanvas/splat-transform``:

- ``src/lib/writers/write-compressed-ply.ts`` (header, element order, SH quantization),
- ``src/lib/writers/compressed-chunk.ts`` (``CompressedChunk.pack``: bounds and bit packing),
- ``src/lib/ops/morton-order.ts`` (``sortMortonStrided``, reached through
  ``src/lib/data-table/morton-order.ts``: the splat order),
- ``src/lib/readers/decompress-ply.ts`` (``isCompressedPly`` / ``decompressPly``: the decode),

and checked against the readers of ``playcanvas/engine`` (``src/framework/parsers/ply.js``
``isCompressedPly``, ``src/scene/gsplat/gsplat-compressed-data.js``) and ``sparkjsdev/spark``
(``src/ply.ts``, ``initSuperSplat`` / ``decodeSuperSplat``).

File: ``binary_little_endian 1.0`` with, in this order (the engine checks the element order and
the property names, order and types exactly)::

    element chunk ceil(N / 256)
      property float min_x min_y min_z max_x max_y max_z
      property float min_scale_x min_scale_y min_scale_z max_scale_x max_scale_y max_scale_z
      property float min_r min_g min_b max_r max_g max_b        (colour bounds; older files lack them)
    element vertex N
      property uint packed_position packed_rotation packed_scale packed_color
    element sh N                                                (only when the SH degree is 1..3)
      property uchar f_rest_0 ... f_rest_{3*(K-1)-1}            (9, 24 or 45, channel-major as in
                                                                 the 3DGS PLY)

- **Order.** Splats are sorted into Morton order before chunking: 10 bits per axis over the
  bounding box (``min(1023, trunc((x - min) * 1024 / (max - min)))``, a zero extent gives 0),
  codes ``part1by2(z) << 2 | part1by2(y) << 1 | part1by2(x)``, stable sort, and every run of
  more than 256 splats sharing a code is sorted again the same way over its own box. Chunk ``c``
  holds file rows ``256 c .. 256 c + 255``.
- **Bounds.** Per chunk, min and max of x, y, z; of the three log scales (each bound then clamped
  to [-20, 20]); and of the colours ``0.5 + SH_C0 * f_dc`` (``SH_C0 = 0.28209479177387814``,
  rounded to float32 before the bounds are taken). All float32.
- **normalize(v, min, max)** = 0 if ``v <= min``, 1 if ``v >= max``, 0 if ``max - min < 1e-5``,
  else ``(v - min) / (max - min)``; **packUnorm(t, bits)** = ``clamp(floor(t * (2^bits - 1) +
  0.5), 0, 2^bits - 1)`` (round half up).
- ``packed_position`` / ``packed_scale``: x in bits 31..21 (11 bits), y in 20..11 (10 bits), z in
  10..0 (11 bits), of the normalised value (log scale for ``packed_scale``).
- ``packed_rotation``: ``rot_0..rot_3`` normalised (multiplied by ``1 / length``); ``i`` = index
  of the largest magnitude (the first on a tie); the quaternion negated if that component is
  negative; bits 31..30 hold ``i``, then the other three components in increasing index order at
  bits 29..20, 19..10, 9..0, each ``packUnorm(v * sqrt(2) / 2 + 0.5, 10)``.
- ``packed_color``: r in bits 31..24, g 23..16, b 15..8 (8 bits each, the colour normalised to
  the chunk's colour bounds), opacity ``sigmoid(logit)`` in bits 7..0.
- ``f_rest_k``: ``clamp(trunc((v / 8 + 0.5) * 256), 0, 255)`` (truncation, times 256).

Decode (``decompress-ply.ts``): ``unpack(v, bits) = v / (2^bits - 1)``, ``lerp(min, max, t) =
min * (1 - t) + max * t``; rotation components ``(unpack(v, 10) - 0.5) * 2 / sqrt(2)`` and the
largest ``sqrt(max(0, 1 - a^2 - b^2 - c^2))``; ``f_dc = (colour - 0.5) / SH_C0`` (without colour
bounds the 8-bit value is the colour itself); SH byte ``b`` -> ``(n - 0.5) * 8`` with ``n = 0``
for 0, 1 for 255, else ``(b + 0.5) / 256`` (the middle of the truncation bin). The engine and
Spark decode SH as ``b * 8 / 255 - 4`` instead, which differs by at most 1/64. The opacity byte
0 or 255 decodes to logit -40 / +40, as the engine does (splat-transform gives -inf / +inf);
every other value is computed exactly as splat-transform does, in float64, stored as float32.

Two points where this module does not copy splat-transform byte for byte: a zero quaternion
(which ``Quat.normalize`` turns into ``rot_3 = 1``, for wxyz data a half turn about z) is stored
as the identity ``rot_0 = 1`` that gsplat renders it as; and the header comment names this
package instead of splat-transform. SH beyond degree 3 cannot be stored (ValueError).

The tests check the binary body against ``@playcanvas/splat-transform`` 3.10.2 (npm) byte for
byte, its decode value for value, and read files written by gsplat 1.5.3's
``export_splats(format="ply_compressed")`` (no header comment, an empty ``sh`` element at degree
0, which is accepted).

Reading returns the splats **in file order**, i.e. Morton-permuted: row ``i`` of
:func:`read_compressed_ply` is splat ``info.order[i]`` of the arrays given to
:func:`write_compressed_ply`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plyfile

from citysplat.io import atomic_open
from citysplat.splat.export import SplatArrays, _as_float32, _check, open_ply, sh_degree_of

__all__ = [
    "CHUNK_SIZE",
    "CHUNK_PROPERTIES",
    "CompressedPlyInfo",
    "SH_C0",
    "VERTEX_PROPERTIES",
    "morton_order",
    "read_compressed_ply",
    "write_compressed_ply",
]

CHUNK_SIZE = 256
SH_C0 = 0.28209479177387814
CHUNK_PROPERTIES = (
    "min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
    "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z",
    "min_r", "min_g", "min_b", "max_r", "max_g", "max_b",
)  # fmt: skip
VERTEX_PROPERTIES = ("packed_position", "packed_rotation", "packed_scale", "packed_color")
_SH_PROPERTY_COUNTS = {9: 1, 24: 2, 45: 3}  # f_rest properties -> SH degree
_OPACITY_LOGIT_LIMIT = 40.0  # the engine's decode of an opacity byte 0 / 255
_OTHERS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])  # components beside the largest


@dataclass(frozen=True)
class CompressedPlyInfo:
    """What :func:`write_compressed_ply` wrote.

    ``order[i]`` is the index, in the arrays given, of the splat stored in file row ``i`` (the
    Morton order); ``bytes`` is the file size; ``sh_degree`` the degree stored (0..3).
    """

    path: Path
    points: int
    chunks: int
    sh_degree: int
    bytes: int
    order: np.ndarray


def _part1by2(v: np.ndarray) -> np.ndarray:
    """Spread the low 10 bits of ``v`` to every third bit (uint32)."""
    v = v & np.uint32(0x000003FF)
    v = (v ^ (v << np.uint32(16))) & np.uint32(0xFF0000FF)
    v = (v ^ (v << np.uint32(8))) & np.uint32(0x0300F00F)
    v = (v ^ (v << np.uint32(4))) & np.uint32(0x030C30C3)
    v = (v ^ (v << np.uint32(2))) & np.uint32(0x09249249)
    return v


def _morton_sort(positions: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``indices`` sorted by the Morton code of ``positions[indices]`` over their own box, runs
    of more than 256 equal codes refined recursively (splat-transform's ``sortMortonStrided``)."""
    if indices.size == 0:
        return indices
    points = positions[indices]
    low = points.min(axis=0)
    extent = points.max(axis=0) - low
    if not np.any(extent):
        return indices  # all points identical
    with np.errstate(divide="ignore"):
        mul = np.where(extent == 0, 0.0, 1024.0 / np.where(extent == 0, 1.0, extent))
    cells = np.minimum(1023.0, (points - low) * mul).astype(np.uint32)  # truncation, >= 0
    codes = (
        (_part1by2(cells[:, 2]) << np.uint32(2))
        + (_part1by2(cells[:, 1]) << np.uint32(1))
        + _part1by2(cells[:, 0])
    )
    order = np.argsort(codes, kind="stable")
    indices = indices[order]
    codes = codes[order]
    starts = np.flatnonzero(np.diff(codes)) + 1
    bounds = np.concatenate([[0], starts, [codes.size]])
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end - start > CHUNK_SIZE:
            indices[start:end] = _morton_sort(positions, indices[start:end])
    return indices


def morton_order(means: np.ndarray) -> np.ndarray:
    """The order (int64 indices into ``means`` [N, 3]) in which a compressed PLY stores splats."""
    positions = np.asarray(means, dtype=np.float32).astype(np.float64)
    return _morton_sort(positions, np.arange(positions.shape[0], dtype=np.int64))


def _normalize(value: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """splat-transform's ``normalize`` (float64, broadcasting)."""
    span = high - low
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (value - low) / span
    t = np.where(span < 0.00001, 0.0, t)
    t = np.where(value >= high, 1.0, t)
    return np.where(value <= low, 0.0, t)


def _pack_unorm(t: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return np.clip(np.floor(t * top + 0.5), 0, top).astype(np.uint32)


def _pack_111011(t: np.ndarray) -> np.ndarray:
    return (
        (_pack_unorm(t[:, 0], 11) << np.uint32(21))
        | (_pack_unorm(t[:, 1], 10) << np.uint32(11))
        | _pack_unorm(t[:, 2], 11)
    )


def _pack_rotation(quats: np.ndarray) -> np.ndarray:
    """``packed_rotation`` of ``rot_0..rot_3`` (float32 [N, 4])."""
    q = quats.astype(np.float64)
    length = np.sqrt(
        ((q[:, 0] * q[:, 0] + q[:, 1] * q[:, 1]) + q[:, 2] * q[:, 2]) + q[:, 3] * q[:, 3]
    )
    zero = length == 0
    q[zero] = (1.0, 0.0, 0.0, 0.0)  # identity (wxyz), see the module docstring
    length[zero] = 1.0
    q = q * (1.0 / length)[:, None]
    rows = np.arange(q.shape[0])
    largest = np.argmax(np.abs(q), axis=1)
    q = np.where((q[rows, largest] < 0)[:, None], -q, q)
    rest = _pack_unorm(q[rows[:, None], _OTHERS[largest]] * (math.sqrt(2) * 0.5) + 0.5, 10)
    return (
        (largest.astype(np.uint32) << np.uint32(30))
        | (rest[:, 0] << np.uint32(20))
        | (rest[:, 1] << np.uint32(10))
        | rest[:, 2]
    )


def _chunk_bounds(values: np.ndarray, chunks: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-chunk min and max of ``values`` [N, 3] (file order); the last chunk may be short."""
    n = values.shape[0]
    padded = np.concatenate([values, np.repeat(values[-1:], chunks * CHUNK_SIZE - n, axis=0)])
    blocks = padded.reshape(chunks, CHUNK_SIZE, values.shape[1])
    return blocks.min(axis=1), blocks.max(axis=1)


def _validated(splats: SplatArrays) -> SplatArrays:
    """float32 copies of the arrays, shapes and finiteness checked (ValueError naming the array)."""
    means = _as_float32("means", splats.means)
    _check("means", means, (None, 3), None)
    n = means.shape[0]
    out = {"means": means}
    for name, shape in (
        ("scales_log", (None, 3)),
        ("quats", (None, 4)),
        ("opacities_logit", (None,)),
        ("sh0", (None, 1, 3)),
        ("shN", (None, None, 3)),
    ):
        array = _as_float32(name, getattr(splats, name))
        if name == "opacities_logit" and array.ndim == 2 and array.shape[1:] == (1,):
            array = array[:, 0]
        if name == "sh0" and array.ndim == 2:
            array = array[:, None, :]
        _check(name, array, shape, n)
        out[name] = array
    try:
        degree = sh_degree_of(out["shN"].shape[1])
    except ValueError as exc:
        raise ValueError(f"shN: {exc}") from None
    if degree > 3:
        raise ValueError(
            f"compressed PLY stores SH up to degree 3, got degree {degree}: "
            "keep the first 15 coefficients (shN[:, :15]) to write it"
        )
    return SplatArrays(**out)


def write_compressed_ply(path: str | os.PathLike[str], splats: SplatArrays) -> CompressedPlyInfo:
    """Write ``splats`` as a PlayCanvas compressed PLY (layout in the module docstring).

    Splats are stored in Morton order (``info.order``); the file goes to a temporary name and is
    renamed into place (the folder is created if needed). Non-finite values, wrong shapes or SH
    above degree 3 raise ValueError before anything is written.
    """
    path = Path(path)
    s = _validated(splats)
    n = s.num_splats
    k1 = s.shN.shape[1]
    degree = sh_degree_of(k1)
    chunks = -(-n // CHUNK_SIZE)

    order = morton_order(s.means)
    means = s.means[order].astype(np.float64)
    scales = s.scales_log[order].astype(np.float64)
    # colours are rounded to float32 before bounds and normalisation, as splat-transform does
    colours = (s.sh0[order, 0].astype(np.float64) * SH_C0 + 0.5).astype(np.float32)
    colours = colours.astype(np.float64)
    chunk_table = np.zeros((chunks, len(CHUNK_PROPERTIES)), dtype="<f4")
    vertex_table = np.zeros((n, len(VERTEX_PROPERTIES)), dtype="<u4")
    if n:
        ci = np.arange(n) // CHUNK_SIZE
        pos_lo, pos_hi = _chunk_bounds(means, chunks)
        scale_lo, scale_hi = _chunk_bounds(scales, chunks)
        scale_lo, scale_hi = np.clip(scale_lo, -20, 20), np.clip(scale_hi, -20, 20)
        col_lo, col_hi = _chunk_bounds(colours, chunks)
        chunk_table[:] = np.concatenate([pos_lo, pos_hi, scale_lo, scale_hi, col_lo, col_hi], 1)

        opacity = 1.0 / (1.0 + np.exp(-s.opacities_logit[order].astype(np.float64)))
        rgb = _normalize(colours, col_lo[ci], col_hi[ci])
        vertex_table[:, 0] = _pack_111011(_normalize(means, pos_lo[ci], pos_hi[ci]))
        vertex_table[:, 1] = _pack_rotation(s.quats[order])
        vertex_table[:, 2] = _pack_111011(_normalize(scales, scale_lo[ci], scale_hi[ci]))
        vertex_table[:, 3] = (
            (_pack_unorm(rgb[:, 0], 8) << np.uint32(24))
            | (_pack_unorm(rgb[:, 1], 8) << np.uint32(16))
            | (_pack_unorm(rgb[:, 2], 8) << np.uint32(8))
            | _pack_unorm(opacity, 8)
        )
    # channel-major, as the 3DGS PLY: f_rest_{c * (K-1) + k} = shN[:, k, c]
    rest = s.shN[order].transpose(0, 2, 1).reshape(n, 3 * k1).astype(np.float64)
    sh_table = np.clip(np.trunc((rest / 8 + 0.5) * 256), 0, 255).astype(np.uint8)

    lines = [
        "ply",
        "format binary_little_endian 1.0",
        "comment Generated by citysplat",
        f"element chunk {chunks}",
        *(f"property float {name}" for name in CHUNK_PROPERTIES),
        f"element vertex {n}",
        *(f"property uint {name}" for name in VERTEX_PROPERTIES),
    ]
    if k1:
        lines += [f"element sh {n}", *(f"property uchar f_rest_{i}" for i in range(3 * k1))]
    header = ("\n".join(lines) + "\nend_header\n").encode("ascii")
    with atomic_open(path) as handle:
        handle.write(header)
        handle.write(chunk_table.tobytes())
        handle.write(vertex_table.tobytes())
        if k1:
            handle.write(sh_table.tobytes())
    return CompressedPlyInfo(
        path=path,
        points=n,
        chunks=chunks,
        sh_degree=degree,
        bytes=path.stat().st_size,
        order=order,
    )


def _columns(
    element: plyfile.PlyElement, names: list[str] | tuple[str, ...], kind: str, path: Path
) -> list[np.ndarray]:
    """The named scalar properties of ``element``, each checked to be of PLY type ``kind``."""
    props = {p.name: p for p in element.properties}
    missing = [name for name in names if name not in props]
    if missing:
        raise ValueError(
            f"{path.name}: not a compressed PLY: element '{element.name}' lacks properties "
            f"{missing}; the file is damaged or another format, rewrite it with "
            "write_compressed_ply or splat-transform"
        )
    dtype = plyfile.PlyProperty("probe", kind).val_dtype
    for name in names:
        p = props[name]
        if isinstance(p, plyfile.PlyListProperty) or np.dtype(p.val_dtype) != np.dtype(dtype):
            raise ValueError(
                f"{path.name}: not a compressed PLY: {element.name}.{name} is {p}, the format "
                f"stores '{kind}'"
            )
    return [np.asarray(element.data[name]) for name in names]


def read_compressed_ply(path: str | os.PathLike[str]) -> SplatArrays:
    """Read a PlayCanvas compressed PLY (ours, SuperSplat's, splat-transform's, gsplat's) into
    :class:`~citysplat.splat.export.SplatArrays`, in **file order** (Morton order for files this
    module writes: row ``i`` is splat ``info.order[i]`` of the arrays written).

    Files with or without per-chunk colour bounds, with 0..3 SH degrees, are read; decoding as
    splat-transform does (module docstring). A file that is not a compressed PLY (a standard 3DGS
    PLY, missing elements or properties, counts that disagree) raises ValueError saying what.
    """
    path = Path(path)
    ply = open_ply(path)
    elements = {element.name: element for element in ply.elements}
    vertex = elements.get("vertex")
    if "chunk" not in elements:
        if vertex is not None and "x" in {p.name for p in vertex.properties}:
            raise ValueError(
                f"{path.name}: a standard (uncompressed) 3DGS PLY, not a compressed one: "
                "read it with citysplat.splat.export.read_ply"
            )
        raise ValueError(
            f"{path.name}: not a compressed PLY: no 'chunk' element (elements: "
            f"{sorted(elements)}); write one with write_compressed_ply"
        )
    if vertex is None:
        raise ValueError(
            f"{path.name}: not a compressed PLY: no 'vertex' element (elements: "
            f"{sorted(elements)}); the file is damaged, rewrite it"
        )
    chunk = elements["chunk"]
    chunk_names = {p.name for p in chunk.properties}
    colour_names = CHUNK_PROPERTIES[12:]
    has_colour = any(name in chunk_names for name in colour_names)
    bounds = _columns(
        chunk, CHUNK_PROPERTIES if has_colour else CHUNK_PROPERTIES[:12], "float", path
    )
    packed = _columns(vertex, VERTEX_PROPERTIES, "uint", path)
    n = len(vertex.data)
    expected_chunks = -(-n // CHUNK_SIZE)
    if len(chunk.data) != expected_chunks:
        raise ValueError(
            f"{path.name}: 'chunk' has {len(chunk.data)} rows but 'vertex' has {n} splats, which "
            f"need ceil({n} / {CHUNK_SIZE}) = {expected_chunks}: the file is damaged or not a "
            "compressed PLY, rewrite it"
        )
    sh = elements.get("sh")
    k1 = 0
    if sh is not None and sh.properties:  # gsplat writes an empty 'sh' element at degree 0
        count = len(sh.properties)
        if count not in _SH_PROPERTY_COUNTS:
            raise ValueError(
                f"{path.name}: 'sh' has {count} properties; a compressed PLY stores 9, 24 or 45 "
                "(SH degree 1, 2 or 3)"
            )
        names = [f"f_rest_{i}" for i in range(count)]
        if [p.name for p in sh.properties] != names:
            raise ValueError(
                f"{path.name}: 'sh' properties must be f_rest_0..f_rest_{count - 1} in order, "
                f"got {[p.name for p in sh.properties][:4]}..."
            )
        if len(sh.data) != n:
            raise ValueError(
                f"{path.name}: 'sh' has {len(sh.data)} rows but 'vertex' has {n}: one per splat "
                "is needed; the file is damaged, rewrite it"
            )
        rest_bytes = np.stack(_columns(sh, names, "uchar", path), axis=1)
        k1 = count // 3

    ci = np.arange(n) // CHUNK_SIZE
    b = [np.asarray(column, dtype=np.float64)[ci] for column in bounds]
    pp, pr, ps, pc = (np.asarray(column, dtype=np.uint32) for column in packed)

    def unpack(value: np.ndarray, shift: int, bits: int) -> np.ndarray:
        top = (1 << bits) - 1
        return ((value >> np.uint32(shift)) & np.uint32(top)).astype(np.float64) / top

    def lerp(low: np.ndarray, high: np.ndarray, t: np.ndarray) -> np.ndarray:
        return low * (1 - t) + high * t

    def unpack_111011(value: np.ndarray, lo: list[np.ndarray], hi: list[np.ndarray]) -> np.ndarray:
        t = (unpack(value, 21, 11), unpack(value, 11, 10), unpack(value, 0, 11))
        return np.stack([lerp(lo[i], hi[i], t[i]) for i in range(3)], axis=1)

    means = unpack_111011(pp, b[0:3], b[3:6])
    scales = unpack_111011(ps, b[6:9], b[9:12])

    norm = 1.0 / (math.sqrt(2) * 0.5)
    abc = np.stack([(unpack(pr, shift, 10) - 0.5) * norm for shift in (20, 10, 0)], axis=1)
    largest = (pr >> np.uint32(30)).astype(np.int64)
    m = np.sqrt(
        np.maximum(
            0.0, 1.0 - ((abc[:, 0] * abc[:, 0] + abc[:, 1] * abc[:, 1]) + abc[:, 2] * abc[:, 2])
        )
    )
    quats = np.empty((n, 4))
    rows = np.arange(n)
    quats[rows[:, None], _OTHERS[largest]] = abc
    quats[rows, largest] = m

    rgb = np.stack([unpack(pc, shift, 8) for shift in (24, 16, 8)], axis=1)
    if has_colour:
        rgb = np.stack([lerp(b[12 + i], b[15 + i], rgb[:, i]) for i in range(3)], axis=1)
    alpha = unpack(pc, 0, 8)
    with np.errstate(divide="ignore"):
        logit = -np.log(1 / np.clip(alpha, 1e-300, 1) - 1)
    logit = np.where(alpha <= 0, -_OPACITY_LOGIT_LIMIT, logit)
    logit = np.where(alpha >= 1, _OPACITY_LOGIT_LIMIT, logit)

    if k1:
        q = rest_bytes.astype(np.float64)
        t = np.where(rest_bytes == 0, 0.0, np.where(rest_bytes == 255, 1.0, (q + 0.5) / 256))
        shN = ((t - 0.5) * 8).astype(np.float32).reshape(n, 3, k1).transpose(0, 2, 1)
    else:
        shN = np.zeros((n, 0, 3), np.float32)

    return SplatArrays(
        means=means.astype(np.float32),
        scales_log=scales.astype(np.float32),
        quats=quats.astype(np.float32),
        opacities_logit=logit.astype(np.float32),
        sh0=((rgb - 0.5) / SH_C0).astype(np.float32).reshape(n, 1, 3),
        shN=np.ascontiguousarray(shN),
    )

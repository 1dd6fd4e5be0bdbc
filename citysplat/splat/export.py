"""Gaussian splats to and from the standard 3DGS PLY file (Inria 3DGS, gsplat, Brush, SuperSplat).

One ``vertex`` element, binary little-endian, every property ``float`` (float32), in this order::

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 ... f_rest_{3*(K-1)-1}
    opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3

- ``nx ny nz`` are zero. The Inria code writes them; gsplat 1.5.3's ``export_splats`` leaves them
  out, and viewers look properties up by name, so :func:`read_ply` accepts both.
- ``f_dc_*`` is the degree-0 SH coefficient per colour channel (gsplat's ``splats["sh0"]``,
  ``[N, 1, 3]``); ``f_rest_*`` holds the ``K - 1`` higher coefficients (``splats["shN"]``,
  ``[N, K-1, 3]``, ``K = (degree + 1) ** 2``) **channel-major**: property
  ``f_rest_{c * (K-1) + k}`` is coefficient ``k`` of channel ``c``. That is the Inria layout
  (``features_rest.transpose(1, 2).flatten(1)``) and gsplat's (``shN.permute(0, 2, 1)``); it is
  not the ``[N, K-1, 3]`` memory order.
- ``opacity`` is the logit (before the sigmoid), ``scale_*`` the natural log of the standard
  deviations, ``rot_*`` the quaternion in ``w x y z`` order as stored (viewers normalise it).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plyfile

from citysplat.io import atomic_open

__all__ = [
    "SplatArrays",
    "ply_property_names",
    "read_ply",
    "sh_degree_of",
    "write_ply",
]

_F32 = np.dtype("<f4")


def sh_degree_of(num_rest_coeffs: int) -> int:
    """SH degree for ``num_rest_coeffs`` higher coefficients per colour channel (``shN.shape[1]``).

    ``0 -> 0``, ``3 -> 1``, ``8 -> 2``, ``15 -> 3``; a count that is not ``(d + 1) ** 2 - 1``
    raises ValueError. (A PLY file has ``3 * num_rest_coeffs`` ``f_rest_*`` properties.)
    """
    n = int(num_rest_coeffs)
    if n < 0:
        raise ValueError(f"number of higher SH coefficients must be >= 0, got {n}")
    root = math.isqrt(n + 1)
    if root * root != n + 1:
        raise ValueError(
            f"{n} higher SH coefficients per channel is not (degree + 1)^2 - 1 "
            "(expected 0, 3, 8, 15, 24, ...)"
        )
    return root - 1


def ply_property_names(num_rest_coeffs: int, normals: bool = True) -> list[str]:
    """The vertex property names of a 3DGS PLY, in file order (``num_rest_coeffs`` = K - 1)."""
    sh_degree_of(num_rest_coeffs)
    names = ["x", "y", "z"]
    if normals:
        names += ["nx", "ny", "nz"]
    names += [f"f_dc_{i}" for i in range(3)]
    names += [f"f_rest_{i}" for i in range(3 * num_rest_coeffs)]
    names += ["opacity"]
    names += [f"scale_{i}" for i in range(3)]
    names += [f"rot_{i}" for i in range(4)]
    return names


@dataclass
class SplatArrays:
    """Splat parameters as stored in a 3DGS PLY, numpy float32, gsplat's shapes and activations.

    ``means`` [N, 3]; ``scales_log`` [N, 3]; ``quats`` [N, 4] (wxyz, as stored);
    ``opacities_logit`` [N]; ``sh0`` [N, 1, 3]; ``shN`` [N, K-1, 3] (``[N, 0, 3]`` at degree 0).
    """

    means: np.ndarray
    scales_log: np.ndarray
    quats: np.ndarray
    opacities_logit: np.ndarray
    sh0: np.ndarray
    shN: np.ndarray

    @property
    def num_splats(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return sh_degree_of(self.shN.shape[1])

    def to_torch(self, device: Any = None) -> dict[str, Any]:
        """The arrays as float32 tensors under gsplat's ``splats`` keys (``means``, ``scales``,
        ``quats``, ``opacities``, ``sh0``, ``shN``), on ``device``."""
        import torch

        values = {
            "means": self.means,
            "scales": self.scales_log,
            "quats": self.quats,
            "opacities": self.opacities_logit,
            "sh0": self.sh0,
            "shN": self.shN,
        }
        return {k: torch.as_tensor(np.array(v), device=device) for k, v in values.items()}


def _as_float32(name: str, value: Any) -> np.ndarray:
    """A float32 numpy copy of a torch tensor (any device, with grad) or array-like."""
    if value is None:
        raise ValueError(f"{name} is None")
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if value.is_complex() or str(value.dtype) == "torch.bool":
            raise ValueError(f"{name} must hold real numbers, got dtype {value.dtype}")
        if str(value.dtype) != "torch.float64":
            value = value.float()  # float16 / bfloat16 / integers (numpy has no bfloat16)
        value = value.numpy()
    try:
        array = np.asarray(value)
    except Exception as exc:  # anything that is not array-like
        raise ValueError(f"{name} is not an array: {type(value).__name__}") from exc
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        return array.astype(_F32, copy=True)  # float64 beyond float32's range becomes inf


def _check(name: str, array: np.ndarray, shape: tuple[int | None, ...], n: int | None) -> None:
    """Shape (``None`` = any size) and finiteness of one input, with its name in the error."""
    expected = (
        "["
        + ", ".join("N" if i == 0 else ("*" if s is None else str(s)) for i, s in enumerate(shape))
        + "]"
    )
    if array.ndim != len(shape) or any(
        s is not None and a != s for a, s in zip(array.shape[1:], shape[1:])
    ):
        raise ValueError(f"{name} must have shape {expected}, got {list(array.shape)}")
    if n is not None and array.shape[0] != n:
        raise ValueError(
            f"{name} has {array.shape[0]} rows but means has {n}: all arrays need one row per splat"
        )
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(array.shape[0], -1).any(axis=1))
        kinds = []
        if np.isnan(array).any():
            kinds.append("NaN")
        if np.isinf(array).any():
            kinds.append("inf (or a value beyond float32's range)")
        raise ValueError(
            f"{name} has non-finite values ({' and '.join(kinds)}) in {rows.size} row(s), "
            f"first at row {int(rows[0])}"
        )


def write_ply(
    path: str | os.PathLike[str],
    means: Any,
    scales_log: Any,
    quats_wxyz: Any,
    opacities_logit: Any,
    sh0: Any,
    shN: Any = None,
) -> Path:
    """Write splats as a standard 3DGS PLY (layout in the module docstring); returns the path.

    Arguments are torch tensors (any device, grad or not) or numpy arrays, in gsplat's shapes:
    ``means`` [N, 3], ``scales_log`` [N, 3], ``quats_wxyz`` [N, 4], ``opacities_logit`` [N] (or
    [N, 1]), ``sh0`` [N, 1, 3] or [N, 3], ``shN`` [N, K-1, 3] or None (degree 0). Values are
    written as float32, bit for bit; shapes and finiteness are checked first (ValueError naming
    the array). Unlike gsplat's ``export_splats``, rows with NaN/inf are not silently dropped.

    The file goes to a temporary name in the same folder and is renamed into place, so a crash
    leaves the old file or the new one; the folder is created if needed.
    """
    path = Path(path)
    m = _as_float32("means", means)
    _check("means", m, (None, 3), None)
    n = m.shape[0]
    s = _as_float32("scales_log", scales_log)
    _check("scales_log", s, (None, 3), n)
    q = _as_float32("quats_wxyz", quats_wxyz)
    _check("quats_wxyz", q, (None, 4), n)
    o = _as_float32("opacities_logit", opacities_logit)
    if o.ndim == 2 and o.shape[1:] == (1,):
        o = o[:, 0]
    _check("opacities_logit", o, (None,), n)
    d = _as_float32("sh0", sh0)
    if d.ndim == 2:
        d = d[:, None, :]
    _check("sh0", d, (None, 1, 3), n)
    if shN is None:
        r = np.zeros((n, 0, 3), _F32)
    else:
        r = _as_float32("shN", shN)
        _check("shN", r, (None, None, 3), n)
    try:
        sh_degree_of(r.shape[1])
    except ValueError as exc:
        raise ValueError(f"shN: {exc}") from None

    names = ply_property_names(r.shape[1])
    columns = [
        m,
        np.zeros((n, 3), _F32),  # normals
        d.reshape(n, 3),
        # channel-major: f_rest_{c * (K-1) + k} = shN[:, k, c]
        r.transpose(0, 2, 1).reshape(n, 3 * r.shape[1]),
        o[:, None],
        s,
        q,
    ]
    table = np.ascontiguousarray(np.concatenate(columns, axis=1), dtype=_F32)
    assert table.shape[1] == len(names)
    vertices = table.view(np.dtype([(name, _F32) for name in names])).reshape(n)
    ply = plyfile.PlyData(
        [plyfile.PlyElement.describe(vertices, "vertex")], text=False, byte_order="<"
    )

    with atomic_open(path) as handle:
        ply.write(handle)
    return path


_REQUIRED = (
    ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    + [f"scale_{i}" for i in range(3)]
    + [f"rot_{i}" for i in range(4)]
)


def open_ply(path: Path) -> plyfile.PlyData:
    """A PLY file, memory-mapped (plyfile's fast path; without it binary rows are parsed one by
    one; copy the columns out before the mapping goes); ValueError naming the file when it is
    not a readable PLY."""
    try:
        with open(path, "rb") as handle:
            return plyfile.PlyData.read(handle, mmap="c")
    except plyfile.PlyParseError as exc:
        raise ValueError(f"{Path(path).name}: not a readable PLY file: {exc}") from exc
    except ValueError as exc:  # numpy, on a binary body shorter than its header says
        raise ValueError(f"{Path(path).name}: not a readable PLY file (truncated?): {exc}"
                         ) from exc


def read_ply(path: str | os.PathLike[str]) -> SplatArrays:
    """Read a standard 3DGS PLY (ours, Inria's, gsplat's, Brush's, ...) into :class:`SplatArrays`.

    Properties are looked up by name, so their order, optional normals, extra properties and the
    byte order do not matter; values come back as float32 (exactly what :func:`write_ply` wrote).
    A PLY that is not a 3DGS splat file (no ``vertex`` element, missing properties, a compressed
    SuperSplat PLY, an ``f_rest`` count that is no SH degree) raises ValueError.
    """
    path = Path(path)
    ply = open_ply(path)
    elements = {element.name: element for element in ply.elements}
    if "vertex" not in elements:
        raise ValueError(
            f"{path.name}: not a 3DGS PLY: no 'vertex' element (elements: {sorted(elements)})"
        )
    vertex = elements["vertex"]
    props = {p.name: p for p in vertex.properties}
    if "chunk" in elements or "packed_position" in props:
        raise ValueError(
            f"{path.name}: a compressed (SuperSplat) PLY; only the standard "
            "uncompressed 3DGS layout is supported"
        )
    missing = [name for name in _REQUIRED if name not in props]
    if missing:
        raise ValueError(f"{path.name}: not a 3DGS PLY: vertex lacks properties {missing}")
    lists = [
        name
        for name, p in props.items()
        if isinstance(p, plyfile.PlyListProperty)
        and (name in _REQUIRED or name.startswith("f_rest_"))
    ]
    if lists:
        raise ValueError(f"{path.name}: not a 3DGS PLY: list properties {lists}")
    rest = sorted(
        (name for name in props if name.startswith("f_rest_")),
        key=lambda name: int(name.rsplit("_", 1)[1]) if name[7:].isdigit() else -1,
    )
    if rest != [f"f_rest_{i}" for i in range(len(rest))]:
        raise ValueError(f"{path.name}: f_rest properties are not f_rest_0..f_rest_{len(rest) - 1}")
    if len(rest) % 3:
        raise ValueError(f"{path.name}: {len(rest)} f_rest properties is not a multiple of 3")
    k1 = len(rest) // 3
    try:
        sh_degree_of(k1)
    except ValueError as exc:
        raise ValueError(f"{path.name}: {exc}") from None

    data = vertex.data
    n = len(data)

    def cols(names: list[str]) -> np.ndarray:
        if not names:
            return np.zeros((n, 0), _F32)
        return np.stack([np.asarray(data[name], dtype=np.float32) for name in names], axis=1)

    return SplatArrays(
        means=cols(["x", "y", "z"]),
        scales_log=cols([f"scale_{i}" for i in range(3)]),
        quats=cols([f"rot_{i}" for i in range(4)]),
        opacities_logit=np.array(data["opacity"], dtype=np.float32),
        sh0=cols([f"f_dc_{i}" for i in range(3)]).reshape(n, 1, 3),
        # the file is channel-major ([N, 3, K-1]); gsplat's shN is [N, K-1, 3]
        shN=np.ascontiguousarray(cols(rest).reshape(n, 3, k1).transpose(0, 2, 1)),
    )

"""Meshes in a district's ENU frame to glTF 2.0 binary (``.glb``) and Wavefront OBJ files.

glTF is Y-up, in metres, so ENU ``(E, N, U)`` is stored as glTF ``(x, y, z) = (E, U, -N)``. That
map is a proper rotation (a quarter turn about east, determinant +1): it keeps counter-clockwise
faces counter-clockwise and up-facing triangles get a +y normal. Every part becomes one node with
one mesh of one indexed ``TRIANGLES`` primitive (``POSITION``, smooth ``NORMAL``, ``COLOR_0`` when
the part has colours) sharing one plain double-sided material, so vertex colours show as they
are. The georeference goes to ``asset.extras`` (origin lon/lat/ellipsoidal height, CRS, axes) so
that an engine or a GIS can place the mesh; :func:`frame_from_extras` turns it back into a
:class:`~citysplat.frames.LocalFrame`.

pygltflib builds and serialises the document; numpy does the arrays. Files are written to a
temporary name and renamed into place (:func:`citysplat.io.atomic_open`).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pygltflib

from citysplat.frames import LocalFrame
from citysplat.io import atomic_open

__all__ = [
    "AXES",
    "MeshPart",
    "enu_to_gltf",
    "frame_from_extras",
    "gltf_to_enu",
    "read_glb",
    "write_glb",
    "write_obj",
]

AXES = "x=east, y=up, z=-north (glTF Y-up), metres"
_RESERVED_EXTRAS = ("enu_origin", "crs", "axes")
_UP = np.array([0.0, 1.0, 0.0])  # glTF up: the normal of vertices whose faces give none
_COMPONENT_DTYPES = {
    pygltflib.BYTE: np.int8,
    pygltflib.UNSIGNED_BYTE: np.uint8,
    pygltflib.SHORT: np.int16,
    pygltflib.UNSIGNED_SHORT: np.uint16,
    pygltflib.UNSIGNED_INT: np.uint32,
    pygltflib.FLOAT: np.float32,
}
_TYPE_SIZES = {pygltflib.SCALAR: 1, pygltflib.VEC2: 2, pygltflib.VEC3: 3, pygltflib.VEC4: 4}
_OBJ_ROWS = 65536  # rows formatted at a time when writing OBJ
_Bad = Callable[[str], ValueError]


@dataclass
class MeshPart:
    """One named triangle mesh in ENU metres (x east, y north, z up).

    ``faces`` index ``vertices`` and wind counter-clockwise seen from outside / above.
    ``colors`` are per vertex: ``(N, 3)`` or ``(N, 4)``, ``uint8`` or floats in ``[0, 1]``;
    they are stored as given (glTF reads ``COLOR_0`` as linear) and multiply the base colour.
    ``extras`` go to the node's ``extras`` (e.g. ``{"kind": "road"}``).
    """

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None = None
    extras: dict | None = None


def enu_to_gltf(points) -> np.ndarray:
    """``(..., 3)`` ENU ``(E, N, U)`` -> glTF ``(x, y, z) = (E, U, -N)``."""
    p = _as_xyz(points)
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)


def gltf_to_enu(points) -> np.ndarray:
    """``(..., 3)`` glTF ``(x, y, z)`` -> ENU ``(E, N, U) = (x, -z, y)``; inverse of
    :func:`enu_to_gltf`."""
    p = _as_xyz(points)
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], axis=-1)


def _as_xyz(points) -> np.ndarray:
    p = np.asarray(points)
    if p.ndim == 0 or p.shape[-1] != 3:
        raise ValueError(f"points must have shape (..., 3), got {p.shape}")
    return p if np.issubdtype(p.dtype, np.floating) else p.astype(np.float64)


def frame_from_extras(extras: dict) -> LocalFrame:
    """The :class:`LocalFrame` a glb written by :func:`write_glb` is in, from its
    ``asset.extras`` (as :func:`read_glb` returns them)."""
    try:
        origin = extras["enu_origin"]
        return LocalFrame(float(origin["lon"]), float(origin["lat"]), float(origin["height"]),
                          str(extras["crs"]))
    except (KeyError, TypeError) as error:
        raise ValueError(f"asset extras carry no ENU georeference ({error!r} missing): "
                         "expected enu_origin {lon, lat, height} and crs") from None


# --------------------------------------------------------------------------- checking input


@dataclass(frozen=True)
class _Checked:
    """A part's arrays, checked, in glTF axes and the types the file stores."""

    name: str
    positions: np.ndarray  # (N, 3) float32, glTF axes
    faces: np.ndarray  # (M, 3) uint16 or uint32
    colors: np.ndarray | None  # (N, 3|4) uint8 or float32
    extras: dict


def _check_part(part: MeshPart) -> _Checked | None:
    """``part`` checked and converted, or None when it has no faces; ValueError naming the part
    and the problem otherwise."""
    name = part.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"mesh part name must be a non-empty string, got {name!r}")

    def bad(problem: str) -> ValueError:
        return ValueError(f"mesh part {name!r}: {problem}")

    faces = _array(part.faces, "faces", bad)
    if faces.size == 0:
        return None
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise bad(f"faces must be an (M, 3) array of vertex indices, got shape {faces.shape}")
    if not np.issubdtype(faces.dtype, np.integer):
        raise bad(f"faces must be integer vertex indices, got dtype {faces.dtype}")
    vertices = _array(part.vertices, "vertices", bad)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise bad(f"vertices must be an (N, 3) array of ENU metres, got shape {vertices.shape}")
    if not (np.issubdtype(vertices.dtype, np.floating) or np.issubdtype(vertices.dtype,
                                                                         np.integer)):
        raise bad(f"vertices must be numbers, got dtype {vertices.dtype}")
    n = len(vertices)
    lo, hi = int(faces.min()), int(faces.max())
    if lo < 0 or hi >= n:
        raise bad(f"face index {lo if lo < 0 else hi} out of range for {n} vertices")
    positions = enu_to_gltf(vertices).astype(np.float32)
    finite = np.isfinite(positions).all(axis=1)
    if not finite.all():
        raise bad(f"{int((~finite).sum())} vertices are NaN, infinite or beyond float32 "
                  f"(first: vertex {int(np.argmin(finite))})")
    index_dtype = np.uint16 if n <= 65535 else np.uint32  # 65535 is the uint16 restart value
    colors = None if part.colors is None else _check_colors(_array(part.colors, "colors", bad),
                                                            n, bad)
    extras = {} if part.extras is None else part.extras
    if not isinstance(extras, dict):
        raise bad(f"extras must be a dict, got {type(extras).__name__}")
    _check_json(extras, bad)
    return _Checked(name, positions, faces.astype(index_dtype), colors, extras)


def _array(value, what: str, bad: _Bad) -> np.ndarray:
    try:
        return np.asarray(value)
    except ValueError as error:  # ragged nested lists
        raise bad(f"{what} are not an array ({error})") from None


def _check_colors(colors: np.ndarray, n: int, bad: _Bad) -> np.ndarray:
    if colors.ndim != 2 or colors.shape != (n, colors.shape[1]) or colors.shape[1] not in (3, 4):
        raise bad(f"colors must be an (N, 3) or (N, 4) array for N = {n} vertices, "
                  f"got shape {colors.shape}")
    if colors.dtype == np.uint8:
        return colors
    if np.issubdtype(colors.dtype, np.floating):
        ok = np.isfinite(colors) & (colors >= 0) & (colors <= 1)
        if not ok.all():
            raise bad("float colors must be finite and in [0, 1] "
                      f"({int((~ok.all(axis=1)).sum())} vertices are not)")
        return colors.astype(np.float32)
    raise bad(f"colors must be uint8 or floats in [0, 1], got dtype {colors.dtype}")


def _check_json(extras: dict, bad: _Bad) -> None:
    try:
        json.dumps(extras, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise bad(f"extras are not plain JSON ({error})") from None


# --------------------------------------------------------------------------------- geometry


def _vertex_normals(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Smooth unit vertex normals: area-weighted sums of the face normals; vertices with no
    (or a cancelling) face normal point up."""
    v = positions.astype(np.float64)
    f = faces.astype(np.intp)
    face_normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # 2 x area
    corners = f.ravel()
    normals = np.stack([np.bincount(corners, weights=np.repeat(face_normals[:, c], 3),
                                    minlength=len(v)) for c in range(3)], axis=1)
    length = np.linalg.norm(normals, axis=1)
    scale = max(float(np.abs(face_normals).max(initial=0.0)), np.finfo(np.float64).tiny)
    ok = length > 1e-12 * scale
    normals[ok] /= length[ok, None]
    normals[~ok] = _UP
    return normals.astype(np.float32)


# ------------------------------------------------------------------------------------- glTF


class _Blob:
    """The binary chunk being built: bufferViews and accessors over 4-byte aligned pieces."""

    def __init__(self, gltf: pygltflib.GLTF2) -> None:
        self.gltf = gltf
        self.pieces: list[bytes] = []
        self.length = 0

    def accessor(self, array: np.ndarray, kind: str, target: int, *, normalized: bool = False,
                 bounds: bool = False, stride: int | None = None) -> int:
        """Append ``array`` (rows are elements) as a bufferView + accessor; its index."""
        component = next(c for c, d in _COMPONENT_DTYPES.items() if d == array.dtype)
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        if stride is not None:  # pad each element to `stride` bytes (4-byte vertex alignment)
            rows = data.reshape(len(data), -1).view(np.uint8)
            padded = np.zeros((len(rows), stride), np.uint8)
            padded[:, :rows.shape[1]] = rows
            data = padded
        raw = data.tobytes()
        self.gltf.bufferViews.append(pygltflib.BufferView(
            buffer=0, byteOffset=self.length, byteLength=len(raw), byteStride=stride,
            target=target))
        self.pieces.append(raw + b"\0" * (-len(raw) % 4))
        self.length += len(self.pieces[-1])
        self.gltf.accessors.append(pygltflib.Accessor(
            bufferView=len(self.gltf.bufferViews) - 1, componentType=component,
            normalized=normalized or None, count=len(array), type=kind,
            min=array.min(axis=0).tolist() if bounds else None,
            max=array.max(axis=0).tolist() if bounds else None))
        return len(self.gltf.accessors) - 1


def _georeference(frame: LocalFrame, extras: dict | None) -> dict:
    extras = {} if extras is None else extras
    if not isinstance(extras, dict):
        raise ValueError(f"glb asset extras must be a dict, got {type(extras).__name__}")
    clash = [key for key in _RESERVED_EXTRAS if key in extras]
    if clash:
        raise ValueError(f"glb asset extras may not set {clash}: write_glb fills them from the "
                         "frame")

    def bad(problem: str) -> ValueError:
        return ValueError(f"glb asset {problem}")

    _check_json(extras, bad)
    origin = {"lon": float(frame.lon0), "lat": float(frame.lat0), "height": float(frame.alt0)}
    return {"enu_origin": origin, "crs": str(frame.crs), "axes": AXES, **extras}


def write_glb(path, parts: Sequence[MeshPart], frame: LocalFrame, extras: dict | None = None,
              generator: str = "citysplat") -> None:
    """Write ``parts`` (ENU metres in ``frame``) as one glTF 2.0 binary file, atomically.

    One node + mesh per part, named after it, with the part's extras; parts without faces are
    left out. ``extras`` join the georeference in ``asset.extras``. pygltflib drops keys whose
    value is None or empty (``""``, ``[]``, ``{}``) from extras. ValueError on bad input.
    """
    checked = [c for c in (_check_part(part) for part in parts) if c is not None]
    gltf = pygltflib.GLTF2(
        asset=pygltflib.Asset(generator=generator, extras=_georeference(frame, extras)),
        scene=0, scenes=[pygltflib.Scene(nodes=list(range(len(checked))))])
    blob = _Blob(gltf)
    if checked:
        gltf.materials.append(pygltflib.Material(
            name="citysplat-default", doubleSided=True,
            pbrMetallicRoughness=pygltflib.PbrMetallicRoughness(
                baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0, roughnessFactor=1.0)))
    for part in checked:
        attributes = pygltflib.Attributes(
            POSITION=blob.accessor(part.positions, pygltflib.VEC3, pygltflib.ARRAY_BUFFER,
                                   bounds=True),
            NORMAL=blob.accessor(_vertex_normals(part.positions, part.faces), pygltflib.VEC3,
                                 pygltflib.ARRAY_BUFFER))
        if part.colors is not None:
            u8 = part.colors.dtype == np.uint8
            attributes.COLOR_0 = blob.accessor(
                part.colors, pygltflib.VEC3 if part.colors.shape[1] == 3 else pygltflib.VEC4,
                pygltflib.ARRAY_BUFFER, normalized=u8,
                stride=4 if u8 and part.colors.shape[1] == 3 else None)
        indices = blob.accessor(part.faces.reshape(-1), pygltflib.SCALAR,
                                pygltflib.ELEMENT_ARRAY_BUFFER)
        gltf.meshes.append(pygltflib.Mesh(name=part.name, primitives=[pygltflib.Primitive(
            attributes=attributes, indices=indices, mode=pygltflib.TRIANGLES, material=0)]))
        gltf.nodes.append(pygltflib.Node(name=part.name, mesh=len(gltf.meshes) - 1,
                                         extras=part.extras))
    if blob.length:
        gltf.buffers.append(pygltflib.Buffer(byteLength=blob.length))
        gltf.set_binary_blob(b"".join(blob.pieces))
        chunks = gltf.save_to_bytes()
    else:  # no geometry: a JSON-only glb (an empty BIN chunk and buffer would be invalid)
        chunks = _json_only_glb(gltf)
    with atomic_open(Path(path)) as handle:
        for chunk in chunks:
            handle.write(chunk)


def _json_only_glb(gltf: pygltflib.GLTF2) -> list[bytes]:
    """A GLB of the JSON chunk alone (pygltflib's always carries a BIN chunk and a buffer)."""
    document = gltf.gltf_to_json(separators=(",", ":"), indent=None).encode("utf-8")
    document += b" " * (-len(document) % 4)
    return [pygltflib.MAGIC, struct.pack("<II", pygltflib.GLTF_VERSION, 12 + 8 + len(document)),
            struct.pack("<I", len(document)), pygltflib.JSON.encode(), document]


def read_glb(path) -> tuple[list[MeshPart], dict]:
    """The parts of a glb written by :func:`write_glb`, back in ENU (float64 vertices, int64
    faces, colours as stored), and its ``asset.extras``."""
    path = Path(path)
    gltf = pygltflib.GLTF2.load_from_bytes(path.read_bytes())
    if gltf is None:
        raise ValueError(f"{path}: not a glTF binary (no JSON chunk)")
    blob = gltf.binary_blob() or b""
    parts = []
    for node in _scene_nodes(gltf, path):
        if node.mesh is None:
            continue
        mesh = gltf.meshes[node.mesh]
        name = node.name or mesh.name or f"part{len(parts)}"
        vertices, faces, colors, offset = [], [], [], 0
        for primitive in mesh.primitives:
            if primitive.mode not in (None, pygltflib.TRIANGLES):
                raise ValueError(f"{path}: mesh {name!r} has a primitive of mode "
                                 f"{primitive.mode}; only TRIANGLES are read")
            if primitive.attributes.POSITION is None:
                raise ValueError(f"{path}: mesh {name!r} has a primitive without POSITION")
            positions = _read_accessor(gltf, blob, primitive.attributes.POSITION, path)
            if primitive.indices is None:
                tris = np.arange(len(positions), dtype=np.int64).reshape(-1, 3)
            else:
                tris = _read_accessor(gltf, blob, primitive.indices, path).astype(np.int64)
            vertices.append(gltf_to_enu(positions.astype(np.float64)))
            faces.append(tris.reshape(-1, 3) + offset)
            offset += len(positions)
            color = primitive.attributes.COLOR_0
            colors.append(None if color is None else _read_accessor(gltf, blob, color, path))
        if not vertices:
            continue
        parts.append(MeshPart(name=name, vertices=np.concatenate(vertices),
                              faces=np.concatenate(faces), colors=_join_colors(colors),
                              extras=node.extras or None))
    return parts, dict(gltf.asset.extras or {})


def _scene_nodes(gltf: pygltflib.GLTF2, path: Path) -> Iterator[pygltflib.Node]:
    """The nodes of the default scene, depth first; ValueError on node transforms (write_glb
    writes none, and read_glb does not apply them)."""
    if gltf.scenes:
        roots = gltf.scenes[gltf.scene or 0].nodes or []
    else:
        roots = range(len(gltf.nodes))
    stack = list(reversed(roots))
    while stack:
        node = gltf.nodes[stack.pop()]
        if node.matrix is not None or node.translation is not None or \
                node.rotation is not None or node.scale is not None:
            raise ValueError(f"{path}: node {node.name!r} has a transform; read_glb reads the "
                             "flat, untransformed layout write_glb writes")
        yield node
        stack.extend(reversed(node.children or []))


def _join_colors(colors: list[np.ndarray | None]) -> np.ndarray | None:
    if any(c is None for c in colors):
        return None
    if len({(c.dtype, c.shape[1]) for c in colors}) != 1:
        colors = [c.astype(np.float32) / 255 if c.dtype == np.uint8 else c for c in colors]
        colors = [np.pad(c, ((0, 0), (0, 4 - c.shape[1])), constant_values=1) for c in colors]
    return np.concatenate(colors)


def _read_accessor(gltf: pygltflib.GLTF2, blob: bytes, index: int, path: Path) -> np.ndarray:
    """Accessor ``index`` as an ``(count, components)`` array (``(count,)`` for scalars); floats
    for normalized integers other than uint8."""
    accessor = gltf.accessors[index]
    if accessor.sparse is not None or accessor.bufferView is None:
        raise ValueError(f"{path}: accessor {index} is sparse or has no bufferView")
    view = gltf.bufferViews[accessor.bufferView]
    if gltf.buffers[view.buffer].uri is not None:
        raise ValueError(f"{path}: accessor {index} reads an external buffer")
    dtype = np.dtype(_COMPONENT_DTYPES[accessor.componentType]).newbyteorder("<")
    width = _TYPE_SIZES[accessor.type]
    stride = view.byteStride or dtype.itemsize * width
    try:
        array = np.ndarray((accessor.count, width), dtype, buffer=blob,
                           offset=(view.byteOffset or 0) + (accessor.byteOffset or 0),
                           strides=(stride, dtype.itemsize)).copy()
    except TypeError as error:
        raise ValueError(f"{path}: accessor {index} lies outside the binary chunk "
                         f"({error})") from None
    if accessor.normalized and dtype != np.uint8:
        info = np.iinfo(dtype)
        array = np.maximum(array.astype(np.float32) / info.max, -1.0)
    return array[:, 0] if accessor.type == pygltflib.SCALAR else array


# -------------------------------------------------------------------------------------- OBJ


def write_obj(path, parts: Sequence[MeshPart], frame: LocalFrame) -> None:
    """Write ``parts`` as one Wavefront OBJ, atomically, in the glb's axes (Y-up metres).

    One ``o name`` per part (parts without faces are left out), ``v x y z r g b`` vertex
    colours in ``[0, 1]`` when any part has colours (white for parts without), and a header
    comment with the ENU frame.
    """
    checked = [c for c in (_check_part(part) for part in parts) if c is not None]
    with_color = any(c.colors is not None for c in checked)
    header = (
        "# citysplat mesh, Wavefront OBJ\n"
        f"# ENU origin: lon {frame.lon0!r} lat {frame.lat0!r} height {frame.alt0!r} "
        f"(metres, ellipsoidal), crs {frame.crs}\n"
        f"# axes: {AXES}\n"
    )
    with atomic_open(Path(path)) as handle:
        handle.write(header.encode())
        offset = 1
        for part in checked:
            handle.write(f"o {_obj_name(part.name)}\n".encode())
            columns = [part.positions]
            if with_color:
                columns.append(_rgb(part.colors, len(part.positions)))
            vertices = np.hstack(columns)
            row = "v" + " %.6f" * 3 + (" %.6g" * 3 if with_color else "") + "\n"
            _write_rows(handle, row, vertices)
            _write_rows(handle, "f %d %d %d\n", part.faces.astype(np.int64) + offset)
            offset += len(part.positions)


def _obj_name(name: str) -> str:
    return "_".join(name.split()) or "part"


def _rgb(colors: np.ndarray | None, n: int) -> np.ndarray:
    if colors is None:
        return np.ones((n, 3))
    rgb = colors[:, :3].astype(np.float64)
    return rgb / 255 if colors.dtype == np.uint8 else rgb


def _write_rows(handle, row: str, array: np.ndarray) -> None:
    for start in range(0, len(array), _OBJ_ROWS):
        block = array[start:start + _OBJ_ROWS]
        handle.write(((row * len(block)) % tuple(block.ravel().tolist())).encode())

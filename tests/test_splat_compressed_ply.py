"""PlayCanvas compressed PLY (citysplat.splat.compressed_ply): round-trip errors on a district-shaped
splat set against the bounds the format's quantization implies, size against the 3DGS PLY, the
exact layout as plyfile reads it, byte-for-byte agreement with splat-transform (the reference
writer and reader, when Node.js and npm are here), and clear errors for bad input.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import plyfile
import pytest

from citysplat.splat.compressed_ply import (
    CHUNK_PROPERTIES,
    CHUNK_SIZE,
    SH_C0,
    VERTEX_PROPERTIES,
    CompressedPlyInfo,
    read_compressed_ply,
    write_compressed_ply,
)
from citysplat.splat.export import SplatArrays, read_ply, write_ply

SPLAT_TRANSFORM_VERSION = "3.10.2"  # @playcanvas/splat-transform, the peer checked against


def _district(n: int = 200_000, seed: int = 0) -> SplatArrays:
    """Splats shaped like a 300 m x 300 m x 30 m district: 80 % along four 14 m wide streets
    (ground and facades up to 30 m), the rest on block roofs 8..30 m high; colours in
    [0.05, 0.95], degree-3 SH."""
    rng = np.random.default_rng(seed)
    n_street = int(n * 0.8)
    n_roof = n - n_street
    centres = np.array([80.0, 210.0, 60.0, 240.0])
    along_x = np.array([True, True, False, False])
    which = rng.integers(0, 4, n_street)
    along = rng.uniform(0, 300, n_street)
    kind = rng.uniform(size=n_street)
    ground = kind < 0.5
    facade = np.where(kind < 0.75, -7.0, 7.0) + rng.normal(0, 0.05, n_street)
    across = np.where(ground, rng.uniform(-7, 7, n_street), facade)
    z = np.where(ground, rng.normal(0.0, 0.03, n_street), rng.uniform(0, 30, n_street))
    side = centres[which] + across
    streets = np.stack(
        [np.where(along_x[which], along, side), np.where(along_x[which], side, along), z], axis=1
    )
    xy = rng.uniform(0, 300, (n_roof, 2))
    block = (xy // 50).astype(int)
    height = 8 + (block[:, 0] * 7 + block[:, 1] * 13) % 23
    roofs = np.column_stack([xy, height + rng.normal(0, 0.03, n_roof)])
    rgb = rng.uniform(0.05, 0.95, (n, 3))
    quats = rng.normal(size=(n, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    return SplatArrays(
        means=np.concatenate([streets, roofs]).astype(np.float32),
        scales_log=rng.normal(-3.5, 0.7, (n, 3)).astype(np.float32),
        quats=quats.astype(np.float32),
        opacities_logit=rng.normal(0, 2, n).astype(np.float32),
        sh0=((rgb - 0.5) / SH_C0).astype(np.float32).reshape(n, 1, 3),
        shN=rng.normal(0, 0.15, (n, 15, 3)).astype(np.float32),
    )


def _awkward(degree: int, seed: int = 1) -> SplatArrays:
    """Cases the encoder must get exactly right: a dense cluster (runs of > 256 equal Morton
    codes, refined recursively), identical points, a flat plane (zero-extent chunks), scales
    beyond the +-20 clamp, opacities that saturate, equal colours, SH at the clamp."""
    rng = np.random.default_rng(seed)
    parts = [
        rng.uniform(0, 100, (3000, 3)),
        rng.uniform(0, 0.01, (2000, 3)) + 50,
        np.repeat([[10.0, 20.0, 5.0]], 600, axis=0),
        np.column_stack([rng.uniform(0, 100, (1500, 2)), np.full(1500, 2.0)]),
    ]
    means = np.concatenate(parts)
    n = len(means)
    scales = rng.normal(-3, 1, (n, 3))
    scales[:50], scales[50:100] = 30, -30
    quats = rng.normal(0, 1, (n, 4))
    quats[10:20] = [0.5, 0.5, -0.5, -0.5]  # ties for the largest component
    opacity = rng.normal(0, 5, n)
    opacity[:30], opacity[30:60] = 100, -100
    sh0 = rng.normal(0, 1, (n, 1, 3))
    sh0[3000:5000] = 0.3
    k1 = (degree + 1) ** 2 - 1
    shN = rng.normal(0, 2, (n, k1, 3))
    shN[:20], shN[20:40] = 4.0, -4.0
    return SplatArrays(*(a.astype(np.float32) for a in (means, scales, quats, opacity, sh0, shN)))


def _chunk_extents(values: np.ndarray, chunks: int) -> np.ndarray:
    """Per-chunk max - min of ``values`` [N, C] already in file order, repeated per splat."""
    n = values.shape[0]
    padded = np.concatenate([values, np.repeat(values[-1:], chunks * CHUNK_SIZE - n, axis=0)])
    blocks = padded.reshape(chunks, CHUNK_SIZE, -1)
    return np.repeat(blocks.max(axis=1) - blocks.min(axis=1), CHUNK_SIZE, axis=0)[:n]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


@pytest.fixture(scope="module")
def district(tmp_path_factory) -> tuple[SplatArrays, CompressedPlyInfo, SplatArrays, dict]:
    splats = _district()
    folder = tmp_path_factory.mktemp("district")
    started = time.perf_counter()
    info = write_compressed_ply(folder / "district.compressed.ply", splats)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    back = read_compressed_ply(info.path)
    decode_s = time.perf_counter() - started
    return splats, info, back, {"encode_s": encode_s, "decode_s": decode_s, "folder": folder}


# --------------------------------------------------------------------------------------------
# round trip


def test_district_round_trip_errors_stay_within_the_format_bounds(district):
    splats, info, back, timing = district
    n = splats.num_splats
    order = info.order
    assert info.points == n == back.num_splats
    assert info.chunks == math.ceil(n / CHUNK_SIZE) and info.sh_degree == 3
    assert np.array_equal(
        np.sort(order), np.arange(n)
    )  # a permutation: file row i = splat order[i]
    print(f"\n200k splats: encode {timing['encode_s']:.2f} s, decode {timing['decode_s']:.2f} s")
    assert timing["encode_s"] < 5 and timing["decode_s"] < 5

    # positions: 11-10-11 bits over each chunk's box -> |error| <= extent / (2^bits - 1) / 2
    ref = splats.means[order].astype(np.float64)
    got = back.means.astype(np.float64)
    extent = _chunk_extents(ref, info.chunks)
    half_step = extent / np.array([2047.0, 1023.0, 2047.0]) / 2
    ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)  # float32 output
    assert np.all(np.abs(got - ref) <= half_step * (1 + 1e-9) + ulp)
    dist = np.linalg.norm(got - ref, axis=1)
    within_mm = float(np.mean(dist <= 1e-3))
    print(
        f"position error: max {dist.max() * 1e3:.1f} mm, median {np.median(dist) * 1e3:.2f} mm, "
        f"p90 {np.quantile(dist, 0.9) * 1e3:.1f} mm; within 1 mm: {within_mm:.1%} "
        f"(median chunk box {np.median(extent[::CHUNK_SIZE], axis=0).round(2).tolist()} m, "
        f"implied median bound {np.median(np.linalg.norm(half_step, axis=1)) * 1e3:.1f} mm)"
    )
    assert np.median(extent[::CHUNK_SIZE, :2]) < 60  # Morton chunks are local, not district-wide

    # colour 0.5 + SH_C0 * f_dc: 8 bits over the chunk's colour range; colours here lie in
    # [0.05, 0.95], so the bound range / 255 / 2 is below 0.45 / 255, inside the 2 / 255
    rgb_ref = 0.5 + SH_C0 * splats.sh0[order, 0].astype(np.float64)
    rgb_got = 0.5 + SH_C0 * back.sh0[:, 0].astype(np.float64)
    colour_err = np.abs(rgb_got - rgb_ref)
    assert np.all(colour_err <= _chunk_extents(rgb_ref, info.chunks) / 255 / 2 + 1e-6)
    assert colour_err.max() <= 2 / 255
    print(
        f"colour error: max {colour_err.max() * 255:.3f}/255, median "
        f"{np.median(colour_err) * 255:.3f}/255"
    )

    # opacity: sigmoid stored in 8 bits over [0, 1]
    opacity_err = np.abs(_sigmoid(back.opacities_logit) - _sigmoid(splats.opacities_logit[order]))
    assert opacity_err.max() <= 0.5 / 255 + 1e-6
    print(f"opacity error (after sigmoid): max {opacity_err.max() * 255:.3f}/255")

    # log scales: 11-10-11 bits over each chunk's (clamped) log-scale range
    scale_ref = splats.scales_log[order].astype(np.float64)
    log_err = np.abs(back.scales_log.astype(np.float64) - scale_ref)
    scale_half_step = (
        _chunk_extents(scale_ref, info.chunks) / np.array([2047.0, 1023.0, 2047.0]) / 2
    )
    assert np.all(log_err <= scale_half_step + 1e-5)
    rel = np.expm1(log_err)
    print(f"scale relative error: max {rel.max():.2%}, median {np.median(rel):.3%}")

    # rotation: three 10-bit components, each off by <= d = sqrt(2) / 2046; the largest (>= 1/2)
    # recomputed from them is off by <= 3 d, so |dq| <= sqrt(12) d and the angle <= 4 asin(|dq|/2)
    q_ref = splats.quats[order].astype(np.float64)
    q_got = back.quats.astype(np.float64)
    q_ref /= np.linalg.norm(q_ref, axis=1, keepdims=True)
    q_got /= np.linalg.norm(q_got, axis=1, keepdims=True)
    dot = np.clip(np.abs(np.sum(q_ref * q_got, axis=1)), 0, 1)
    angle = 2 * np.arccos(dot)
    bound = 4 * math.asin(math.sqrt(12) * math.sqrt(2) / 2046 / 2)
    assert angle.max() <= bound + 1e-6
    print(
        f"rotation error: max {math.degrees(angle.max()):.3f} deg, median "
        f"{math.degrees(np.median(angle)):.3f} deg (bound {math.degrees(bound):.3f} deg)"
    )

    # SH rest: 8 bits, bins of 8 / 256 decoded at their middle -> |error| <= 1/64 inside [-4, 4)
    rest_ref = splats.shN[order].astype(np.float64)
    assert np.all(np.abs(rest_ref) < 4 - 1 / 32)
    sh_err = np.abs(back.shN.astype(np.float64) - rest_ref)
    assert back.shN.shape == rest_ref.shape
    assert sh_err.max() <= 1 / 64 + 1e-6
    print(f"SH rest error: max {sh_err.max():.4f}, median {np.median(sh_err):.4f} (bound 1/64)")


def test_file_is_much_smaller_than_the_3dgs_ply(district):
    splats, info, _, timing = district
    plain = write_ply(
        timing["folder"] / "district.ply",
        splats.means, splats.scales_log, splats.quats, splats.opacities_logit,
        splats.sh0, splats.shN,
    )  # fmt: skip
    plain_bytes = plain.stat().st_size
    n = splats.num_splats
    header = info.path.read_bytes().index(b"end_header\n") + len(b"end_header\n")
    # 18 floats per chunk, 4 uints per splat, 45 SH bytes per splat (degree 3)
    assert info.bytes == info.path.stat().st_size == header + 72 * info.chunks + 16 * n + 45 * n
    ratio = info.bytes / plain_bytes
    print(
        f"\nsizes: compressed PLY {info.bytes / 1e6:.2f} MB, 3DGS PLY {plain_bytes / 1e6:.2f} MB, "
        f"ratio {ratio:.3f} ({1 / ratio:.2f}x smaller)"
    )
    assert ratio < 0.26


def test_plyfile_reads_the_exact_layout(district):
    splats, info, _, _ = district
    ply = plyfile.PlyData.read(str(info.path))
    assert ply.byte_order == "<" and not ply.text
    # the engine (src/framework/parsers/ply.js isCompressedPly) checks order, names and types
    assert [e.name for e in ply.elements] == ["chunk", "vertex", "sh"]
    chunk, vertex, sh = ply.elements
    assert [(p.name, p.val_dtype) for p in chunk.properties] == [
        (c, "f4") for c in CHUNK_PROPERTIES
    ]
    assert [(p.name, p.val_dtype) for p in vertex.properties] == [
        (v, "u4") for v in VERTEX_PROPERTIES
    ]
    assert [(p.name, p.val_dtype) for p in sh.properties] == [
        (f"f_rest_{i}", "u1") for i in range(45)
    ]
    assert (len(chunk.data), len(vertex.data), len(sh.data)) == (
        info.chunks,
        info.points,
        info.points,
    )
    # each chunk's box is the min / max of the 256 splats it holds, in file (Morton) order
    ref = splats.means[info.order]
    padded = np.concatenate([ref, np.repeat(ref[-1:], info.chunks * CHUNK_SIZE - info.points, 0)])
    blocks = padded.reshape(info.chunks, CHUNK_SIZE, 3)
    for axis, name in enumerate("xyz"):
        assert np.array_equal(chunk.data[f"min_{name}"], blocks[:, :, axis].min(axis=1))
        assert np.array_equal(chunk.data[f"max_{name}"], blocks[:, :, axis].max(axis=1))


@pytest.mark.parametrize("degree, n", [(0, 1000), (1, 257), (2, 1), (3, 0)])
def test_small_sets_and_every_sh_degree(tmp_path, degree, n):
    s = _awkward(degree)
    s = SplatArrays(*(getattr(s, f)[:n] for f in (
        "means", "scales_log", "quats", "opacities_logit", "sh0", "shN")))  # fmt: skip
    info = write_compressed_ply(tmp_path / "sub" / "s.compressed.ply", s)
    assert (info.points, info.chunks, info.sh_degree) == (n, math.ceil(n / 256), degree)
    ply = plyfile.PlyData.read(str(info.path))
    names = [e.name for e in ply.elements]
    assert names == (["chunk", "vertex", "sh"] if degree else ["chunk", "vertex"])
    if degree:
        assert len(ply["sh"].properties) == {1: 9, 2: 24, 3: 45}[degree]
    back = read_compressed_ply(info.path)
    assert back.num_splats == n and back.sh_degree == degree
    for field in ("means", "scales_log", "quats", "opacities_logit", "sh0", "shN"):
        assert getattr(back, field).dtype == np.float32
        assert np.all(np.isfinite(getattr(back, field)))
    if n:
        ref = s.means[info.order].astype(np.float64)
        extent = _chunk_extents(ref, info.chunks)
        assert np.all(np.abs(back.means - ref) <= extent / [2047, 1023, 2047] / 2 + 1e-4)
    assert not [p for p in (tmp_path / "sub").iterdir() if p.name != "s.compressed.ply"]


def test_zero_quaternion_is_stored_as_the_identity(tmp_path):
    s = _awkward(0)
    s.quats[:5] = 0.0
    info = write_compressed_ply(tmp_path / "z.compressed.ply", s)
    back = read_compressed_ply(info.path)
    rows = np.flatnonzero(info.order < 5)
    assert rows.size == 5
    assert np.allclose(back.quats[rows], [1, 0, 0, 0], atol=2e-3)


def test_file_without_colour_bounds_decodes_the_colour_byte_directly(tmp_path):
    """Older SuperSplat files have 12 chunk properties; the 8-bit colour is then the colour."""
    chunk = np.zeros(1, dtype=[(name, "<f4") for name in CHUNK_PROPERTIES[:12]])
    chunk["max_x"] = chunk["max_y"] = chunk["max_z"] = 1.0
    vertex = np.zeros(2, dtype=[(name, "<u4") for name in VERTEX_PROPERTIES])
    vertex["packed_rotation"] = (0 << 30) | (512 << 20) | (512 << 10) | 512  # ~identity
    vertex["packed_color"] = [(255 << 24) | (128 << 16) | (0 << 8) | 255, (51 << 24) | 128]
    vertex["packed_position"] = [0xFFFFFFFF, 0]
    path = tmp_path / "old.compressed.ply"
    plyfile.PlyData(
        [
            plyfile.PlyElement.describe(chunk, "chunk"),
            plyfile.PlyElement.describe(vertex, "vertex"),
        ],
        byte_order="<",
    ).write(str(path))
    back = read_compressed_ply(path)
    rgb = 0.5 + SH_C0 * back.sh0[:, 0].astype(np.float64)
    assert np.allclose(rgb, [[1.0, 128 / 255, 0.0], [51 / 255, 0.0, 0.0]], atol=1e-6)
    assert np.allclose(back.means, [[1, 1, 1], [0, 0, 0]])
    assert back.opacities_logit[0] == 40.0
    assert abs(back.opacities_logit[1] - math.log((128 / 255) / (1 - 128 / 255))) < 1e-5
    assert np.allclose(back.quats, [[1, 0, 0, 0]] * 2, atol=1e-3)


# --------------------------------------------------------------------------------------------
# peer: @playcanvas/splat-transform (the writer SuperSplat uses, and a reader)


@pytest.fixture(scope="module")
def splat_transform(tmp_path_factory) -> list[str]:
    """The splat-transform CLI, installed once with npm into a cache folder outside the
    repository (or a pytest temporary folder when no cache folder can be written)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node/npm not on PATH: the splat-transform peer check needs Node.js and npm")
    name = f"splat-transform-{SPLAT_TRANSFORM_VERSION}"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "citysplat-tests"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        cache = tmp_path_factory.mktemp("npm")
    root = cache / name
    cli = root / "node_modules" / "@playcanvas" / "splat-transform" / "bin" / "cli.mjs"
    if not cli.exists():
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache))
        try:
            subprocess.run(
                [npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund",
                 "--loglevel=error", f"@playcanvas/splat-transform@{SPLAT_TRANSFORM_VERSION}"],
                check=True, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            detail = getattr(exc, "stderr", "") or exc
            pytest.skip(f"npm could not install splat-transform (offline?): {str(detail)[-300:]}")
        try:
            staging.rename(root)
        except OSError:  # another run installed it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    command = [node, str(cli)]
    probe = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0 or SPLAT_TRANSFORM_VERSION not in probe.stdout + probe.stderr:
        pytest.skip(f"splat-transform does not run with this Node.js: {probe.stderr[-300:]}")
    return command


def _body(path: Path) -> tuple[list[bytes], bytes]:
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    return data[:end].split(b"\n"), data[end:]


@pytest.mark.parametrize("degree", [0, 3])
def test_splat_transform_writes_the_same_bytes_and_decodes_the_same_values(
    tmp_path, splat_transform, degree
):
    s = _awkward(degree)
    ours = write_compressed_ply(tmp_path / "ours.compressed.ply", s).path
    plain = write_ply(
        tmp_path / "plain.ply", s.means, s.scales_log, s.quats, s.opacities_logit, s.sh0, s.shN
    )
    peer = tmp_path / "peer.compressed.ply"
    decoded = tmp_path / "decoded.ply"
    for source, target in ((plain, peer), (ours, decoded)):
        run = subprocess.run(
            [*splat_transform, "-q", "-w", str(source), str(target)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]

    # writer: same header apart from the generator comment, same binary body to the byte
    our_header, our_body = _body(ours)
    peer_header, peer_body = _body(peer)
    assert [h for h in our_header if not h.startswith(b"comment")] == [
        h for h in peer_header if not h.startswith(b"comment")
    ]
    assert our_body == peer_body

    # reader: splat-transform's plain PLY of our file holds exactly our decode (float32 for
    # float32), except that it writes an opacity byte of 0 / 255 as -inf / +inf where we give
    # -40 / +40, as the PlayCanvas engine does
    ref = read_compressed_ply(ours)
    theirs = read_ply(decoded)
    for field in ("means", "scales_log", "quats", "sh0", "shN"):
        assert np.array_equal(getattr(theirs, field), getattr(ref, field)), field
    finite = np.isfinite(theirs.opacities_logit)
    assert np.array_equal(theirs.opacities_logit[finite], ref.opacities_logit[finite])
    assert np.array_equal(
        np.sign(theirs.opacities_logit[~finite]), np.sign(ref.opacities_logit[~finite])
    )
    assert np.all(np.abs(ref.opacities_logit[~finite]) == 40.0) and (~finite).sum() >= 60


def test_reads_files_written_by_gsplat(tmp_path):
    """gsplat 1.5.3's ``export_splats(format="ply_compressed")`` writes the layout too (its own
    Morton order, no header comment); each decoded splat is matched to its source by a 1 m
    lattice position and compared against the bounds of the chunk it was stored in."""
    torch = pytest.importorskip("torch")
    exporter = pytest.importorskip("gsplat.exporter")
    rng = np.random.default_rng(3)
    grid = np.stack(np.meshgrid(*[np.arange(16)] * 3, indexing="ij"), -1).reshape(-1, 3)
    n = len(grid)
    quats = rng.normal(size=(n, 4))
    arrays = {
        "means": grid,
        "scales": rng.normal(-3, 1, (n, 3)),
        "quats": quats / np.linalg.norm(quats, axis=1, keepdims=True),
        "opacities": rng.uniform(-3, 3, n),  # all above gsplat's 1/255 opacity cut
        "sh0": rng.normal(0, 0.5, (n, 1, 3)),
        "shN": rng.normal(0, 0.2, (n, 8, 3)),
    }
    arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
    path = tmp_path / "gsplat.compressed.ply"
    exporter.export_splats(
        **{k: torch.from_numpy(v) for k, v in arrays.items()},
        format="ply_compressed",
        save_to=str(path),
    )
    back = read_compressed_ply(path)
    chunk = plyfile.PlyData.read(str(path))["chunk"].data
    ci = np.arange(n) // CHUNK_SIZE
    cell = np.round(back.means).astype(int)
    source = cell[:, 0] * 256 + cell[:, 1] * 16 + cell[:, 2]
    assert back.num_splats == n and np.unique(source).size == n and back.sh_degree == 2

    def half_step(prefix: str, names: str, bits=(2047, 1023, 2047)) -> np.ndarray:
        low = np.stack([chunk[f"min_{prefix}{c}"] for c in names], 1)[ci]
        high = np.stack([chunk[f"max_{prefix}{c}"] for c in names], 1)[ci]
        return (high - low) / np.asarray(bits, dtype=np.float64) / 2 + 1e-5

    assert np.all(np.abs(back.means - arrays["means"][source]) <= half_step("", "xyz"))
    scale_err = np.abs(back.scales_log - arrays["scales"][source])
    assert np.all(scale_err <= half_step("scale_", "xyz"))
    colour_err = SH_C0 * np.abs(back.sh0 - arrays["sh0"][source])[:, 0]
    assert np.all(colour_err <= half_step("", "rgb", (255, 255, 255)))
    assert np.abs(back.shN - arrays["shN"][source]).max() <= 1 / 64 + 1e-6


# --------------------------------------------------------------------------------------------
# bad input


def _rewrite(source: Path, target: Path, edit) -> Path:
    """``source`` (a valid compressed PLY) with its elements changed by ``edit(dict)``."""
    ply = plyfile.PlyData.read(str(source))
    elements = {e.name: e.data for e in ply.elements}
    edit(elements)
    plyfile.PlyData(
        [plyfile.PlyElement.describe(np.asarray(data), name) for name, data in elements.items()],
        byte_order="<",
    ).write(str(target))
    return target


def _drop(data: np.ndarray, name: str) -> np.ndarray:
    keep = [n for n in data.dtype.names if n != name]
    return np.array(data[keep].tolist(), dtype=[(n, data.dtype[n]) for n in keep])


def _retype(data: np.ndarray, name: str, dtype: str) -> np.ndarray:
    fields = [(n, dtype if n == name else data.dtype[n]) for n in data.dtype.names]
    return np.array(data.tolist(), dtype=fields)


@pytest.fixture
def valid_file(tmp_path) -> Path:
    return write_compressed_ply(tmp_path / "valid.compressed.ply", _awkward(1)).path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda e: e.update(chunk=e["chunk"][:-1]), r"'chunk' has 27 rows .* need ceil\(7100 / 256\) = 28"),
        (lambda e: e.update(vertex=_drop(e["vertex"], "packed_scale")), r"lacks properties \['packed_scale'\]"),
        (lambda e: e.update(chunk=_drop(e["chunk"], "max_g")), r"'chunk' lacks properties \['max_g'\]"),
        (lambda e: e.update(vertex=_retype(e["vertex"], "packed_color", "<f4")), r"vertex.packed_color .* stores 'uint'"),
        (lambda e: e.update(sh=_drop(e["sh"], "f_rest_8")), r"'sh' has 8 properties; .* 9, 24 or 45"),
        (lambda e: e.update(sh=e["sh"][:-5]), r"'sh' has 7095 rows but 'vertex' has 7100"),
        (lambda e: e.pop("chunk"), r"no 'chunk' element"),
        (lambda e: e.pop("vertex"), r"no 'vertex' element"),
    ],
    ids=["chunk-count", "vertex-property", "colour-bound", "property-type", "sh-count", "sh-rows",
         "no-chunk", "no-vertex"],
)  # fmt: skip
def test_malformed_files_give_clear_errors(tmp_path, valid_file, edit, message):
    bad = _rewrite(valid_file, tmp_path / "bad.ply", edit)
    with pytest.raises(ValueError, match=message):
        read_compressed_ply(bad)


def test_other_files_give_clear_errors(tmp_path, valid_file):
    s = _awkward(0)
    plain = write_ply(
        tmp_path / "plain.ply", s.means, s.scales_log, s.quats, s.opacities_logit, s.sh0
    )
    with pytest.raises(ValueError, match=r"standard \(uncompressed\) 3DGS PLY.*read_ply"):
        read_compressed_ply(plain)
    (tmp_path / "junk.ply").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ValueError, match="not a readable PLY file"):
        read_compressed_ply(tmp_path / "junk.ply")
    data = valid_file.read_bytes()
    (tmp_path / "cut.ply").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable PLY file"):
        read_compressed_ply(tmp_path / "cut.ply")
    with pytest.raises(FileNotFoundError):
        read_compressed_ply(tmp_path / "missing.ply")


def test_bad_splats_are_refused_before_anything_is_written(tmp_path):
    target = tmp_path / "out" / "s.compressed.ply"
    s = _awkward(0)
    s.means[7, 1] = np.nan
    with pytest.raises(
        ValueError, match=r"means has non-finite values \(NaN\) in 1 row\(s\), first at row 7"
    ):
        write_compressed_ply(target, s)
    s = _awkward(4)
    with pytest.raises(ValueError, match=r"SH up to degree 3, got degree 4.*shN\[:, :15\]"):
        write_compressed_ply(target, s)
    s = _awkward(0)
    s.opacities_logit = s.opacities_logit[:-1]
    with pytest.raises(ValueError, match="opacities_logit has 7099 rows but means has 7100"):
        write_compressed_ply(target, s)
    s = _awkward(0)
    s.shN = np.zeros((s.num_splats, 5, 3), np.float32)
    with pytest.raises(ValueError, match="shN: 5 higher SH coefficients"):
        write_compressed_ply(target, s)
    assert not target.parent.exists() or not any(target.parent.iterdir())

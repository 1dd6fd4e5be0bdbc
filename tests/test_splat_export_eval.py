"""3DGS PLY export / import (citysplat.splat.export) and held-out metrics (citysplat.splat.evaluate).

PLY: exact float32 round trips, the standard property order, the channel-major ``f_rest`` layout,
files readable by plyfile, open3d and (the other way) written by gsplat's own exporter, clear
errors for bad input, and no temporary file left behind by a failed write.
Metrics: PSNR / SSIM against closed forms and their masked variants, and the side-by-side PNG.
"""

from __future__ import annotations

import math

import numpy as np
import plyfile
import pytest
import torch
from PIL import Image

from citysplat.splat.evaluate import EvalResult, evaluate_images, psnr, side_by_side, ssim
from citysplat.splat.export import (
    SplatArrays,
    ply_property_names,
    read_ply,
    sh_degree_of,
    write_ply,
)

STANDARD_NAMES_DEG0 = [
    "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
]  # fmt: skip


def _splats(n: int, degree: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random splat parameters in gsplat's shapes, float32, with awkward values mixed in."""
    rng = np.random.default_rng(seed)
    k1 = (degree + 1) ** 2 - 1
    out = {
        "means": rng.normal(0, 50, (n, 3)),
        "scales_log": rng.normal(-3, 1, (n, 3)),
        "quats_wxyz": rng.normal(0, 2, (n, 4)),  # deliberately not normalised
        "opacities_logit": rng.normal(0, 4, n),
        "sh0": rng.normal(0, 1, (n, 1, 3)),
        "shN": rng.normal(0, 0.1, (n, k1, 3)),
    }
    out = {k: v.astype(np.float32) for k, v in out.items()}
    out["means"][0] = [1e-40, -0.0, 3.4e38]  # subnormal, negative zero, near float32 max
    return out


def _assert_bitwise(read: SplatArrays, ref: dict[str, np.ndarray]) -> None:
    pairs = {
        "means": read.means,
        "scales_log": read.scales_log,
        "quats_wxyz": read.quats,
        "opacities_logit": read.opacities_logit,
        "sh0": read.sh0,
        "shN": read.shN,
    }
    for name, got in pairs.items():
        assert got.dtype == np.float32, name
        assert got.shape == ref[name].shape, name
        assert got.tobytes() == np.ascontiguousarray(ref[name]).tobytes(), name


# --------------------------------------------------------------------------------------------
# PLY


@pytest.mark.parametrize("degree", [0, 3])
@pytest.mark.parametrize("as_torch", [False, True])
def test_ply_round_trip_is_bitwise_exact(tmp_path, degree, as_torch):
    ref = _splats(37, degree, seed=degree)
    args = {k: torch.from_numpy(v.copy()) for k, v in ref.items()} if as_torch else ref
    if as_torch:
        args["means"].requires_grad_(True)  # parameters straight from the trainer
    out = write_ply(tmp_path / "s.ply", **args)
    assert out == tmp_path / "s.ply"
    back = read_ply(out)
    _assert_bitwise(back, ref)
    assert back.num_splats == 37 and back.sh_degree == degree
    assert back.shN.shape == (37, (degree + 1) ** 2 - 1, 3)
    tensors = back.to_torch()
    assert set(tensors) == {"means", "scales", "quats", "opacities", "sh0", "shN"}
    assert torch.equal(tensors["opacities"], torch.from_numpy(ref["opacities_logit"]))


def test_ply_accepts_flat_sh0_missing_shN_and_float64(tmp_path):
    ref = _splats(5, 0)
    out = write_ply(
        tmp_path / "s.ply",
        ref["means"].astype(np.float64),
        ref["scales_log"],
        ref["quats_wxyz"],
        ref["opacities_logit"][:, None],  # [N, 1]
        ref["sh0"][:, 0, :],  # [N, 3]
        None,
    )
    _assert_bitwise(read_ply(out), ref)


def test_ply_header_is_the_standard_3dgs_layout(tmp_path):
    ref = _splats(4, 3)
    path = write_ply(tmp_path / "s.ply", **ref)
    header = path.read_bytes().split(b"end_header\n")[0].decode("ascii").splitlines()
    assert header[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 4"]
    props = [line.split() for line in header if line.startswith("property")]
    assert all(kind == "float" for _, kind, _ in props)
    names = [name for _, _, name in props]
    expected = STANDARD_NAMES_DEG0[:9] + [f"f_rest_{i}" for i in range(45)]
    expected += STANDARD_NAMES_DEG0[9:]
    assert names == expected == ply_property_names(15)
    assert ply_property_names(0) == STANDARD_NAMES_DEG0
    assert ply_property_names(0, normals=False) == [n for n in STANDARD_NAMES_DEG0 if n[0] != "n"]
    # 17 + 45 floats per vertex, nothing else after the header
    assert path.stat().st_size == len("\n".join(header)) + len("\nend_header\n") + 4 * 62 * 4


def test_f_rest_is_channel_major(tmp_path):
    """shN[i, k, c] goes to f_rest_{c * (K-1) + k}, as Inria's 3DGS and gsplat write it."""
    ref = _splats(2, 1)
    ref["shN"] = np.array(
        [
            [[0, 10, 20], [1, 11, 21], [2, 12, 22]],
            [[100, 110, 120], [101, 111, 121], [102, 112, 122]],
        ],
        dtype=np.float32,
    )  # shN[i, k, c] = 100 i + 10 c + k
    ref["sh0"] = np.array([[[7, 8, 9]], [[17, 18, 19]]], dtype=np.float32)
    path = write_ply(tmp_path / "s.ply", **ref)
    vertex = plyfile.PlyData.read(str(path))["vertex"]
    rest = np.stack([vertex[f"f_rest_{j}"] for j in range(9)], axis=1)
    np.testing.assert_array_equal(rest[0], [0, 1, 2, 10, 11, 12, 20, 21, 22])
    np.testing.assert_array_equal(rest[1], [100, 101, 102, 110, 111, 112, 120, 121, 122])
    np.testing.assert_array_equal(vertex["f_dc_1"], [8, 18])
    # Inria: features_rest [N, K-1, 3] -> transpose(1, 2).flatten(1); gsplat: permute(0, 2, 1)
    inria = torch.from_numpy(ref["shN"]).transpose(1, 2).flatten(start_dim=1).numpy()
    np.testing.assert_array_equal(rest, inria)
    for name in ["nx", "ny", "nz"]:
        np.testing.assert_array_equal(vertex[name], 0.0)
    np.testing.assert_array_equal(vertex["rot_0"], ref["quats_wxyz"][:, 0])  # w first, as stored


def test_plain_plyfile_reads_every_value(tmp_path):
    ref = _splats(9, 2)
    path = write_ply(tmp_path / "s.ply", **ref)
    ply = plyfile.PlyData.read(str(path))
    assert [e.name for e in ply.elements] == ["vertex"] and not ply.text
    assert ply.byte_order == "<"
    v = ply["vertex"]
    np.testing.assert_array_equal(np.stack([v["x"], v["y"], v["z"]], 1), ref["means"])
    np.testing.assert_array_equal(v["opacity"], ref["opacities_logit"])
    np.testing.assert_array_equal(
        np.stack([v[f"scale_{i}"] for i in range(3)], 1), ref["scales_log"]
    )


def test_open3d_reads_the_positions(tmp_path):
    o3d = pytest.importorskip("open3d")
    ref = _splats(23, 3)
    ref["means"][0] = [1.0, 2.0, 3.0]  # open3d drops nothing, but keep the values ordinary
    path = write_ply(tmp_path / "s.ply", **ref)
    cloud = o3d.io.read_point_cloud(str(path))
    points = np.asarray(cloud.points)
    assert points.shape == (23, 3)
    np.testing.assert_array_equal(points, ref["means"].astype(np.float64))


def test_reads_gsplat_exporter_output(tmp_path):
    """gsplat 1.5.3's export_splats writes no normals; the values must come back unchanged."""
    exporter = pytest.importorskip("gsplat.exporter")
    ref = _splats(11, 3)
    ref["means"][0] = [1.0, 2.0, 3.0]
    t = {k: torch.from_numpy(v) for k, v in ref.items()}
    data = exporter.export_splats(
        t["means"], t["scales_log"], t["quats_wxyz"], t["opacities_logit"], t["sh0"], t["shN"]
    )
    (tmp_path / "g.ply").write_bytes(data)
    _assert_bitwise(read_ply(tmp_path / "g.ply"), ref)
    # and the vertex payload equals ours minus the three normal columns
    ours = plyfile.PlyData.read(str(write_ply(tmp_path / "o.ply", **ref)))["vertex"].data
    theirs = plyfile.PlyData.read(str(tmp_path / "g.ply"))["vertex"].data
    assert list(theirs.dtype.names) == ply_property_names(15, normals=False)
    for name in theirs.dtype.names:
        assert ours[name].tobytes() == theirs[name].tobytes(), name


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("means", np.zeros((5, 2), np.float32), ["means", "[N, 3]", "[5, 2]"]),
        ("scales_log", np.zeros((4, 3), np.float32), ["scales_log", "4 rows", "5"]),
        ("quats_wxyz", np.zeros((5, 3), np.float32), ["quats_wxyz", "[N, 4]"]),
        ("opacities_logit", np.zeros((5, 2), np.float32), ["opacities_logit", "[N]"]),
        ("sh0", np.zeros((5, 2, 3), np.float32), ["sh0", "[N, 1, 3]"]),
        ("shN", np.zeros((5, 4, 3), np.float32), ["shN", "(degree + 1)^2 - 1"]),
        ("shN", np.zeros((5, 3, 1), np.float32), ["shN", "[N, *, 3]"]),
        ("sh0", np.array(["a"] * 15).reshape(5, 1, 3), ["sh0", "real numbers"]),
    ],
)
def test_bad_shapes_name_the_array(tmp_path, field, value, words):
    args = _splats(5, 1)
    args[field] = value
    with pytest.raises(ValueError) as info:
        write_ply(tmp_path / "s.ply", **args)
    for word in words:
        assert word in str(info.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "field", ["means", "scales_log", "quats_wxyz", "opacities_logit", "sh0", "shN"]
)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_values_name_the_array(tmp_path, field, bad):
    args = {k: torch.from_numpy(v) for k, v in _splats(6, 1).items()}
    args[field].view(-1)[7 if args[field].numel() > 7 else 3] = bad
    with pytest.raises(ValueError, match=rf"^{field} has non-finite values .* first at row \d"):
        write_ply(tmp_path / "s.ply", **args)
    assert not list(tmp_path.iterdir())


def test_float64_beyond_float32_range_is_rejected(tmp_path):
    args = _splats(3, 0)
    args["scales_log"] = args["scales_log"].astype(np.float64)
    args["scales_log"][2, 1] = 1e39
    with pytest.raises(ValueError, match="scales_log .*row 2"):
        write_ply(tmp_path / "s.ply", **args)


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = write_ply(tmp_path / "s.ply", **_splats(3, 0, seed=1))
    before = path.read_bytes()

    def broken_write(self, stream):
        stream.write(b"ply\nformat binary_little_endian 1.0\n")  # half a file, then a crash
        raise OSError("disk full")

    monkeypatch.setattr(plyfile.PlyData, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_ply(path, **_splats(3, 0, seed=2))
    assert [p.name for p in tmp_path.iterdir()] == ["s.ply"]
    assert path.read_bytes() == before
    with pytest.raises(OSError, match="disk full"):
        write_ply(tmp_path / "sub" / "new.ply", **_splats(3, 0))
    assert list((tmp_path / "sub").iterdir()) == []


def test_read_rejects_non_splat_plys(tmp_path):
    mesh = tmp_path / "mesh.ply"
    xyz = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    plyfile.PlyData([plyfile.PlyElement.describe(xyz, "vertex")]).write(str(mesh))
    with pytest.raises(ValueError, match=r"not a 3DGS PLY.*f_dc_0"):
        read_ply(mesh)
    faces = tmp_path / "faces.ply"
    face = np.zeros(1, dtype=[("vertex_indices", "O")])
    face["vertex_indices"][0] = np.array([0, 1, 2], np.int32)
    plyfile.PlyData([plyfile.PlyElement.describe(face, "face")]).write(str(faces))
    with pytest.raises(ValueError, match="no 'vertex' element"):
        read_ply(faces)
    junk = tmp_path / "junk.ply"
    junk.write_bytes(b"not a ply at all")
    with pytest.raises(ValueError, match="not a readable PLY"):
        read_ply(junk)
    # 5 f_rest properties: not 3 * ((d + 1)^2 - 1)
    names = ply_property_names(0) + [f"f_rest_{i}" for i in range(5)]
    odd = np.zeros(2, dtype=[(n, "<f4") for n in names])
    plyfile.PlyData([plyfile.PlyElement.describe(odd, "vertex")]).write(str(tmp_path / "odd.ply"))
    with pytest.raises(ValueError, match="multiple of 3"):
        read_ply(tmp_path / "odd.ply")


def test_sh_degree_of():
    assert [sh_degree_of(n) for n in (0, 3, 8, 15, 24)] == [0, 1, 2, 3, 4]
    for bad in (1, 2, 9, 45, -1):
        with pytest.raises(ValueError):
            sh_degree_of(bad)


# --------------------------------------------------------------------------------------------
# metrics


def _image(h: int = 40, w: int = 56, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(h // 8 + 1, w // 8 + 1, 3, generator=g)  # smooth, image-like structure
    up = torch.nn.functional.interpolate(base.permute(2, 0, 1)[None], size=(h, w), mode="bilinear")
    return (0.8 * up[0].permute(1, 2, 0) + 0.1).contiguous()


def test_psnr_closed_form_and_identity():
    a = _image()
    assert psnr(a, a) == float("inf")
    noise = 0.03 * torch.randn(a.shape, generator=torch.Generator().manual_seed(1))
    b = a + noise  # stays inside [0, 1]: a is in [0.1, 0.9]
    mse = float(noise.double().square().mean())
    assert psnr(b, a) == pytest.approx(10 * math.log10(1 / mse), abs=1e-4)
    # a batch is the mean of per-image PSNRs
    c = a + 2 * noise
    mse_c = float((2 * noise).double().square().mean())
    expected = (10 * math.log10(1 / mse) + 10 * math.log10(1 / mse_c)) / 2
    assert psnr(torch.stack([b, c]), torch.stack([a, a])) == pytest.approx(expected, abs=1e-4)


def test_ssim_identity_and_monotone_in_noise():
    a = _image()
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(a.shape, generator=g)
    values = [ssim((a + s * noise).clamp(0, 1), a) for s in (0.01, 0.03, 0.1)]
    assert 1.0 > values[0] > values[1] > values[2] > 0.0
    # an all-True mask gives the unmasked value (torchmetrics' map is image-aligned)
    full = torch.ones(a.shape[:2], dtype=torch.bool)
    b = (a + 0.03 * noise).clamp(0, 1)
    assert ssim(b, a, full) == pytest.approx(ssim(b, a), abs=1e-6)
    assert psnr(b, a, full) == pytest.approx(psnr(b, a), abs=1e-4)


def test_masked_psnr_ignores_pixels_outside_the_mask():
    a = _image()
    b = a + 0.02 * torch.randn(a.shape, generator=torch.Generator().manual_seed(3))
    mask = torch.ones(a.shape[:2], dtype=torch.bool)
    mask[10:25, 20:40] = False  # a "moving car"
    clean = psnr(b, a, mask)
    corrupted = b.clone()
    corrupted[~mask] = 1.0 - a[~mask]  # as wrong as it gets
    assert psnr(corrupted, a, mask) == clean
    assert psnr(corrupted, a) < clean - 5
    inside = (b - a)[mask].double().square().mean()
    assert clean == pytest.approx(10 * math.log10(1 / float(inside)), abs=1e-9)
    # SSIM only feels the corruption through the window around the hole
    assert ssim(corrupted, a, mask) > ssim(corrupted, a)
    with pytest.raises(ValueError, match="selects no pixel"):
        psnr(b, a, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="bool"):
        psnr(b, a, mask.float())


def test_metric_input_errors():
    a = _image()
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(a, a[:-1])
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        ssim(a.permute(2, 0, 1), a.permute(2, 0, 1))
    with pytest.raises(ValueError, match="float"):
        psnr((a * 255).to(torch.uint8), (a * 255).to(torch.uint8))


def test_evaluate_images_averages_per_image():
    a, a2 = _image(seed=0), _image(seed=5)
    g = torch.Generator().manual_seed(4)
    b = (a + 0.02 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    c = (a2 + 0.05 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    mask = torch.ones(a.shape[:2], dtype=torch.bool)
    mask[:5] = False
    result = evaluate_images(iter([(b, a), (c, a2, mask)]))
    assert isinstance(result, EvalResult) and result.num_images == 2
    assert result.psnr_per_image == pytest.approx([psnr(b, a), psnr(c, a2, mask)])
    assert result.ssim_per_image == pytest.approx([ssim(b, a), ssim(c, a2, mask)])
    assert result.psnr == pytest.approx(sum(result.psnr_per_image) / 2)
    assert result.ssim == pytest.approx(sum(result.ssim_per_image) / 2)
    # predictions are clamped to [0, 1] before scoring
    over = a.clone()
    over[0, 0] = 3.0
    assert evaluate_images([(over, a.clamp(max=1.0))]).psnr > psnr(over, a)
    with pytest.raises(ValueError, match="no images"):
        evaluate_images([])
    with pytest.raises(ValueError, match="pair 1"):
        evaluate_images([(b, a), (b, a[:-1])])


@pytest.mark.parametrize("third", [False, True])
def test_side_by_side_png(tmp_path, third):
    a = _image(h=24, w=32)
    b = (a + 0.2).clamp(0, 1)
    mask = torch.ones(24, 32, dtype=torch.bool)
    mask[:, :4] = False
    out = side_by_side(b, a, tmp_path / "cmp" / "view.png", mask=mask if third else None)
    assert out == tmp_path / "cmp" / "view.png"
    with Image.open(out) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size == ((3 if third else 2) * 32, 24)
        pixels = np.asarray(image)
    expected_pred = (b.double() * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(pixels[:, :32], expected_pred)
    np.testing.assert_array_equal(pixels[:, 32:64], (a.double() * 255).round().byte().numpy())
    if third:
        assert (pixels[:, 64:68] == 128).all()  # unscored pixels are grey
        assert pixels[:, 68:].std() > 0
    assert [p.name for p in out.parent.iterdir()] == ["view.png"]
    explicit = side_by_side(b, a, tmp_path / "e.png", error_map=True)
    with Image.open(explicit) as image:
        assert image.size == (3 * 32, 24)

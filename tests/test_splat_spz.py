"""SPZ export / import (citysplat.splat.spz): Niantic's compressed splat format, in RUB axes.

Round trips of a district-sized splat set within the format's quantization bounds, the ENU -> RUB
rotation of means, quaternions and SH (checked by rendering colours with gsplat's SH code and
against the reference library's analytic SH table), the bytes the reference's formulas give,
the size against the 3DGS PLY, a peer reader/writer (gsply), and clear errors for bad input.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from citysplat.splat.export import SplatArrays, write_ply
from citysplat.splat.spz import (
    ENU_TO_RUB,
    SpzInfo,
    choose_fractional_bits,
    enu_to_rub,
    read_spz,
    rub_to_enu,
    sh_rotation_matrices,
    spz_info,
    write_spz,
)

SH_C0 = 0.28209479177387814
S = math.sqrt(0.5)

# Error bounds that follow from the quantization steps (module docstring):
COLOUR_BOUND = 0.5 * SH_C0 / (0.15 * 255)  # half a colour byte in sh0, as colour: 0.94/255
ALPHA_BOUND = 0.5 / 255  # half a byte of sigmoid(opacity)
SCALE_REL_BOUND = math.exp(0.5 / 16) - 1  # half a step of 1/16 in log scale: 3.2 %
SH1_BOUND = (8 / 2 + 0.5) / 128  # rounding to 1/128, then to a bucket of 8: 0.035
SH_REST_BOUND = (16 / 2 + 0.5) / 128  # bucket of 16: 0.066
# v3 stores 3 components to 0.5 / 511 * sqrt(1/2) each; the largest is rebuilt from the norm
# and moves by at most the sum of those, so |dq| <= sqrt(12) * e and the angle <= 2 |dq|.
ROT_V3_BOUND = 2 * math.sqrt(12) * 0.5 / 511 * S  # 4.8e-3 rad, 0.28 degrees
# v2 stores xyz to 1/255 and rebuilds w = sqrt(1 - |xyz|^2): near w = 0 that is
# sqrt(2 sqrt(3) / 255) = 0.117, an angle of up to 2 * 0.117: the reason v3 replaced it.
ROT_V2_BOUND = 2 * math.sqrt(2 * math.sqrt(3) / 255) + 0.01


def _district(n: int = 20_000, seed: int = 0, sh_scale: float = 1.0) -> SplatArrays:
    """Splats over a 400 m x 400 m x 30 m district (origin at a corner), degree-3 SH with
    trained-like magnitudes (higher bands small), unnormalised quaternions."""
    rng = np.random.default_rng(seed)
    means = np.stack(
        [rng.uniform(0, 400, n), rng.uniform(0, 400, n), rng.uniform(-5, 25, n)], axis=1
    )
    sh_n = np.concatenate(
        [rng.normal(0, 0.1, (n, 3, 3)), rng.normal(0, 0.05, (n, 12, 3))], axis=1
    ) * sh_scale
    return SplatArrays(
        means=means.astype(np.float32),
        scales_log=rng.normal(-3, 1, (n, 3)).clip(-9.9, 5.9).astype(np.float32),
        quats=rng.normal(0, 2, (n, 4)).astype(np.float32),
        opacities_logit=rng.normal(0, 3, n).astype(np.float32),
        sh0=rng.uniform(-0.5 / SH_C0, 0.5 / SH_C0, (n, 1, 3)).astype(np.float32),
        shN=sh_n.clip(-0.7, 0.7).astype(np.float32),
    )


def _colour(sh0: np.ndarray) -> np.ndarray:
    return np.clip(0.5 + SH_C0 * sh0.astype(np.float64), 0.0, 1.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def _unit(q: np.ndarray) -> np.ndarray:
    q = q.astype(np.float64)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _angle(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Rotation angle between quaternions (either sign), radians."""
    dot = np.abs(np.sum(_unit(q1) * _unit(q2), axis=1)).clip(0.0, 1.0)
    return 2.0 * np.arccos(dot)


def _rotmat(q: np.ndarray) -> np.ndarray:
    """[N, 3, 3] rotation matrices of wxyz quaternions."""
    w, x, y, z = _unit(q).T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


def _sh_bounds() -> np.ndarray:
    """Per coefficient (15), the largest ENU error of SH values quantized in RUB: the RUB
    error bound times the largest column sum of |M_l| (the rotation mixes coefficients)."""
    bounds = [SH1_BOUND * np.abs(m).sum(axis=0).max() if level == 1 else
              SH_REST_BOUND * np.abs(m).sum(axis=0).max()
              for level, m in enumerate(sh_rotation_matrices(ENU_TO_RUB, 3), start=1)]
    return np.repeat(bounds, [3, 5, 7])


# ----------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("version", [3, 2])
def test_district_round_trip_within_quantization(tmp_path: Path, version: int) -> None:
    splats = _district()
    path = tmp_path / "district.spz"
    info = write_spz(path, splats, version=version)
    assert info == SpzInfo(points=20_000, sh_degree=3, fractional_bits=12,
                           bytes=path.stat().st_size, version=version)
    assert spz_info(path) == info
    back = read_spz(path)
    assert back.means.dtype == np.float32 and back.shN.shape == (20_000, 15, 3)

    pos_err = np.abs(back.means - splats.means).max()
    colour_err = np.abs(_colour(back.sh0) - _colour(splats.sh0)).max()
    alpha_err = np.abs(_sigmoid(back.opacities_logit) - _sigmoid(splats.opacities_logit)).max()
    scale_err = np.abs(np.exp(back.scales_log - splats.scales_log) - 1).max()
    angle = _angle(back.quats, splats.quats)
    sh_err = np.abs(back.shN - splats.shN).max(axis=(0, 2))
    print(f"\nSPZ v{version}, {info.points} splats, 400 x 400 x 30 m, "
          f"{info.fractional_bits} fractional bits: position {pos_err * 1000:.3f} mm, "
          f"colour {colour_err * 255:.3f}/255, alpha {alpha_err * 255:.3f}/255, "
          f"scale {scale_err * 100:.2f} %, rotation max {np.degrees(angle.max()):.3f} deg "
          f"(median {np.degrees(np.median(angle)):.3f}), SH degree 1 {sh_err[:3].max():.4f}, "
          f"degrees 2-3 {sh_err[3:].max():.4f}")

    assert pos_err <= 1e-3
    assert pos_err <= 0.5 * info.position_step_m + 1e-6  # float32 at 400 m: 3e-5 m ulp
    assert colour_err <= 2 / 255
    assert colour_err <= COLOUR_BOUND + 1e-6
    assert alpha_err <= ALPHA_BOUND + 1e-6
    assert scale_err <= SCALE_REL_BOUND + 1e-5
    assert angle.max() <= (ROT_V3_BOUND if version == 3 else ROT_V2_BOUND)
    assert np.all(sh_err <= _sh_bounds() + 1e-6)
    # v3 rebuilds the largest component from the unit norm; v2 rebuilds w = sqrt(max(0, ...)),
    # which leaves |q| slightly above 1 where the stored xyz already exceed it
    norms = np.linalg.norm(back.quats, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-6 if version == 3 else 1e-2)


def test_sh_quantization_bound_over_the_range(tmp_path: Path) -> None:
    """SH values spread over the storable range: the error in RUB (where they are quantized) is
    within a bucket's half-width, in ENU within that mixed by the rotation."""
    rng = np.random.default_rng(5)
    splats = _district(3000, seed=5)
    splats.shN = rng.uniform(-0.7, 0.7, splats.shN.shape).astype(np.float32)
    write_spz(tmp_path / "sh.spz", splats)
    back = read_spz(tmp_path / "sh.spz")
    rub_err = np.abs(enu_to_rub(back).shN - enu_to_rub(splats).shN).max(axis=(0, 2))
    enu_err = np.abs(back.shN - splats.shN).max(axis=(0, 2))
    print(f"\nSH error, RUB: degree 1 {rub_err[:3].max():.4f} (bound {SH1_BOUND:.4f}), "
          f"2-3 {rub_err[3:].max():.4f} (bound {SH_REST_BOUND:.4f}); ENU: degree 1 "
          f"{enu_err[:3].max():.4f}, 2-3 {enu_err[3:].max():.4f} (bound {_sh_bounds().max():.4f})")
    assert rub_err[:3].max() <= SH1_BOUND + 1e-6
    assert rub_err[3:].max() <= SH_REST_BOUND + 1e-6
    assert np.all(enu_err <= _sh_bounds() + 1e-6)
    assert rub_err[3:].max() > 0.9 * SH_REST_BOUND  # the range really was exercised


def test_view_dependent_colour_survives(tmp_path: Path) -> None:
    """The rendered colour (degree 3) from random directions, before and after the round trip,
    evaluated with gsplat's own SH code."""
    import torch
    from gsplat.cuda import _torch_impl as sh_impl
    splats = _district(2000, seed=2)
    write_spz(tmp_path / "c.spz", splats)
    back = read_spz(tmp_path / "c.spz")
    dirs = torch.as_tensor(np.random.default_rng(3).normal(size=(2000, 3)))

    def colour(s: SplatArrays) -> np.ndarray:
        coeffs = torch.as_tensor(np.concatenate([s.sh0, s.shN], axis=1), dtype=torch.float64)
        return (sh_impl._spherical_harmonics(3, dirs, coeffs) + 0.5).clamp(0, 1).numpy()

    err = np.abs(colour(back) - colour(splats)).max(axis=1)
    # the bound from the per-coefficient bounds: sum_k bound_k |Y_k(d)| (the clamp only shrinks)
    basis = sh_impl._eval_sh_bases_fast(16, torch.nn.functional.normalize(dirs, dim=-1)).numpy()
    bounds = np.concatenate([[COLOUR_BOUND / SH_C0], _sh_bounds()])
    bound = np.abs(basis) @ bounds
    print(f"\nview-dependent colour error (degree 3, 4/5-bit SH): max {err.max() * 255:.2f}/255, "
          f"mean {err.mean() * 255:.2f}/255, mean bound {bound.mean() * 255:.2f}/255")
    assert np.all(err <= bound + 1e-6)


# ----------------------------------------------------------------------------------------------
# Axes


def test_enu_to_rub_means_quats() -> None:
    """RUB = (E, U, -N); orientations follow: R(q') = R_enu->rub R(q); scales and the rest stay."""
    splats = _district(500, seed=1)
    rub = enu_to_rub(splats)
    e, n, u = splats.means.T
    np.testing.assert_array_equal(rub.means, np.stack([e, u, -n], axis=1))
    np.testing.assert_allclose(enu_to_rub(SplatArrays(
        means=np.array([[1.0, 2.0, 3.0]], np.float32), scales_log=np.zeros((1, 3), np.float32),
        quats=np.array([[1.0, 0, 0, 0]], np.float32), opacities_logit=np.zeros(1, np.float32),
        sh0=np.zeros((1, 1, 3), np.float32), shN=np.zeros((1, 0, 3), np.float32),
    )).means, [[1.0, 3.0, -2.0]])
    np.testing.assert_allclose(_rotmat(rub.quats), ENU_TO_RUB @ _rotmat(splats.quats), atol=1e-6)
    # a splat's covariance turns with the frame: Sigma' = R Sigma R^T
    cov = _rotmat(splats.quats) * np.exp(2 * splats.scales_log.astype(np.float64))[:, None, :]
    cov = cov @ _rotmat(splats.quats).transpose(0, 2, 1)
    cov_rub = _rotmat(rub.quats) * np.exp(2 * rub.scales_log.astype(np.float64))[:, None, :]
    cov_rub = cov_rub @ _rotmat(rub.quats).transpose(0, 2, 1)
    np.testing.assert_allclose(cov_rub, ENU_TO_RUB @ cov @ ENU_TO_RUB.T, rtol=1e-5, atol=1e-9)
    for name in ("scales_log", "opacities_logit", "sh0"):
        np.testing.assert_array_equal(getattr(rub, name), getattr(splats, name))
    back = rub_to_enu(rub)
    np.testing.assert_allclose(back.means, splats.means, atol=1e-5)
    np.testing.assert_allclose(back.quats, splats.quats, atol=1e-5)
    np.testing.assert_allclose(back.shN, splats.shN, atol=1e-6)


def test_sh_rotation_keeps_colours() -> None:
    """Colour seen from direction d in ENU == colour from R d with the RUB coefficients, for all
    degrees, evaluated before quantization with gsplat's SH code (to 1e-5)."""
    import torch
    from gsplat.cuda import _torch_impl as sh_impl
    rng = np.random.default_rng(4)
    n = 4000
    splats = _district(n, seed=4)
    splats.shN = rng.uniform(-1, 1, splats.shN.shape).astype(np.float32)
    rub = enu_to_rub(splats)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    for degree in (1, 2, 3):
        k = (degree + 1) ** 2

        def colour(s: SplatArrays, dirs: np.ndarray, k: int = k, degree: int = degree):
            coeffs = np.concatenate([s.sh0, s.shN], axis=1)[:, :k]
            return sh_impl._spherical_harmonics(
                degree, torch.as_tensor(dirs), torch.as_tensor(coeffs, dtype=torch.float64)
            ).numpy()

        before = colour(splats, d)
        after = colour(rub, d @ ENU_TO_RUB.T)
        assert np.abs(after - before).max() <= 1e-5, degree
        # and the rotation matters: without it the colours differ
        assert np.abs(colour(splats, d @ ENU_TO_RUB.T) - before).max() > 0.1


def test_sh_rotation_matches_reference_table() -> None:
    """The numerical SH matrices equal the reference library's analytic R_x(-pi/2) table
    (``kAnalyticRotateMinusPiHalfAboutXTable``, used for its RFU -> RUB conversion)."""
    r3, r15 = math.sqrt(3), math.sqrt(15)
    a, b = math.sqrt(5 / 8), math.sqrt(3 / 8)
    band1 = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    band2 = [[0, 0, 0, -1, 0], [0, -1, 0, 0, 0], [0, 0, -0.5, 0, -r3 / 2], [1, 0, 0, 0, 0],
             [0, 0, -r3 / 2, 0, 0.5]]
    band3 = [[0, 0, 0, a, 0, -b, 0], [0, -1, 0, 0, 0, 0, 0], [0, 0, 0, b, 0, a, 0],
             [-a, 0, -b, 0, 0, 0, 0], [0, 0, 0, 0, -0.25, 0, -r15 / 4], [b, 0, -a, 0, 0, 0, 0],
             [0, 0, 0, 0, -r15 / 4, 0, 0.25]]
    mats = sh_rotation_matrices(ENU_TO_RUB, 3)
    for got, want in zip(mats, (band1, band2, band3)):
        np.testing.assert_allclose(got, want, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Bytes, size, fixed point


def test_bytes_follow_the_reference_formulas(tmp_path: Path) -> None:
    """Two splats whose bytes are worked out by hand from the reference's formulas."""
    splats = SplatArrays(
        # RUB: (1.5, 0.5, 2.25) and (-1, 0, -0)
        means=np.array([[1.5, -2.25, 0.5], [-1.0, 0.0, 0.0]], np.float32),
        scales_log=np.array([[-3.0, 0.0, 5.9375], [-11.0, -10.0, 7.0]], np.float32),
        # RUB: identity, and (w, x) = (0.8, 0.6) (both about x, so they commute with R_x)
        quats=np.array([[S, S, 0, 0], [0.2 * S, 1.4 * S, 0, 0]], np.float32),
        opacities_logit=np.array([0.0, 20.0], np.float32),
        sh0=np.array([[[0.0, 1.0, -1.0]], [[4.0, -4.0, 0.5]]], np.float32),
        # degree 1, ENU k0 -> RUB k1, -k1 -> k0, k2 -> k2
        shN=np.array([[[0.25, 0, 0], [0, 0, 0], [0.1, 0.5, -0.3]], np.zeros((3, 3))], np.float32),
    )
    info = write_spz(tmp_path / "two.spz", splats, antialiased=True)
    assert info.antialiased and spz_info(tmp_path / "two.spz").antialiased
    raw = gzip.decompress((tmp_path / "two.spz").read_bytes())
    expected = b"".join([
        struct.pack("<IIIBBBB", 0x5053474E, 3, 2, 1, 12, 1, 0),
        bytes([0x00, 0x18, 0x00, 0x00, 0x08, 0x00, 0x00, 0x24, 0x00]),  # 6144, 2048, 9216
        bytes([0x00, 0xF0, 0xFF, 0, 0, 0, 0, 0, 0]),  # -4096, 0, 0
        bytes([128, 255]),  # round(127.5), sigmoid(20) * 255
        bytes([128, 166, 89, 255, 0, 147]),  # 127.5 + 38.25 * sh0, clamped
        bytes([112, 160, 255, 0, 0, 255]),  # (log + 10) * 16, clamped
        struct.pack("<I", 3 << 30),  # identity: w largest, the rest 0
        struct.pack("<I", (3 << 30) | (434 << 20)),  # x = 0.6: floor(511 * 0.6 / 0.7071 + 0.5)
        bytes([128, 128, 128, 160, 128, 128, 144, 192, 88]),  # 0.25 -> 160, 0.1 -> 144, ...
        bytes([128] * 9),
    ])
    assert raw == expected
    # deterministic output: the same splats give the same file
    write_spz(tmp_path / "again.spz", splats, antialiased=True)
    assert (tmp_path / "again.spz").read_bytes() == (tmp_path / "two.spz").read_bytes()


def test_file_is_about_ten_times_smaller_than_ply(tmp_path: Path) -> None:
    splats = _district()
    info = write_spz(tmp_path / "d.spz", splats)
    ply = tmp_path / "d.ply"
    write_ply(ply, splats.means, splats.scales_log, splats.quats, splats.opacities_logit,
              splats.sh0, splats.shN)
    ratio = ply.stat().st_size / info.bytes
    print(f"\n{info.points} splats, degree 3: PLY {ply.stat().st_size:,} bytes, "
          f"SPZ {info.bytes:,} bytes ({info.bytes / info.points:.1f} per splat), {ratio:.1f}x")
    assert ratio >= 7.5  # random positions, rotations and colours: real scenes compress better


def test_fractional_bits_from_the_extent(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    assert choose_fractional_bits(np.array([[400.0, 400.0, 30.0]])) == 12
    assert choose_fractional_bits(np.array([[1023.9, 0, 0]])) == 12
    assert choose_fractional_bits(np.array([[-1500.0, 0, 0]])) == 11
    assert choose_fractional_bits(np.zeros((0, 3))) == 12
    # a 12 km city-wide frame still gets 9 bits: errors under 1 mm
    splats = _district(2000, seed=6)
    splats.means = rng.uniform(-6000, 6000, (2000, 3)).astype(np.float32)
    info = write_spz(tmp_path / "wide.spz", splats)
    assert info.fractional_bits == 9
    err = np.abs(read_spz(tmp_path / "wide.spz").means - splats.means).max()
    assert err <= 0.5 * info.position_step_m + 5e-4 * 2**-10 and err < 1e-3
    # given bits are checked against the extent
    splats.means = rng.uniform(-1000, 1000, (2000, 3)).astype(np.float32)
    splats.means[0] = [3000.0, 0, 0]
    with pytest.raises(ValueError, match=r"3000 m .* 12 fractional bits .* fractional_bits <= 11"):
        write_spz(tmp_path / "x.spz", splats, fractional_bits=12)
    assert write_spz(tmp_path / "x.spz", splats, fractional_bits=11).fractional_bits == 11
    with pytest.raises(ValueError, match="fractional_bits must be 1..24"):
        write_spz(tmp_path / "x.spz", splats, fractional_bits=0)
    splats.means[0] = [5e6, 0, 0]
    with pytest.raises(ValueError, match="subtract a local origin"):
        write_spz(tmp_path / "x.spz", splats)
    assert not (tmp_path / "y.spz").exists()


# ----------------------------------------------------------------------------------------------
# Peer: gsply (reads and writes SPZ without converting axes: its arrays are the file's RUB)


def _gsply() -> ModuleType:
    """The gsply package (a test dependency); without it the test fails on CI (``CI=true``) and
    is skipped elsewhere."""
    try:
        import gsply
    except ImportError:
        message = "gsply is not installed: pip install -e '.[test]' (or pip install gsply)"
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return gsply


def test_gsply_reads_our_file(tmp_path: Path) -> None:
    gsply = _gsply()
    splats = _district(5000, seed=7)
    for version in (3, 2):
        path = tmp_path / f"ours_v{version}.spz"
        write_spz(path, splats, version=version)
        ours = enu_to_rub(read_spz(path))  # what the file holds, in its RUB axes
        peer = gsply.read_spz(path)
        np.testing.assert_array_equal(peer.means, ours.means)
        np.testing.assert_allclose(peer.scales, ours.scales_log, atol=1e-6)
        np.testing.assert_allclose(peer.opacities, ours.opacities_logit, atol=1e-4)
        np.testing.assert_allclose(peer.sh0, ours.sh0.reshape(-1, 3), atol=1e-6)
        np.testing.assert_allclose(peer.shN, ours.shN, atol=1e-6)
        assert _angle(peer.quats, ours.quats).max() < 1e-3
        # and against the ENU originals, through the axis change
        rub = enu_to_rub(splats)
        assert np.abs(peer.means - rub.means).max() <= 1e-3
        assert np.abs(_colour(peer.sh0) - _colour(rub.sh0.reshape(-1, 3))).max() <= 2 / 255


def test_we_read_a_gsply_file(tmp_path: Path) -> None:
    gsply = _gsply()
    splats = _district(5000, seed=8)
    rub = enu_to_rub(splats)
    data = gsply.GSData.from_arrays(
        means=rub.means, scales=rub.scales_log, quats=rub.quats, opacities=rub.opacities_logit,
        sh0=rub.sh0.reshape(-1, 3), shN=rub.shN, format="ply",
    )
    gsply.write_spz(tmp_path / "peer.spz", data, version=3)
    assert spz_info(tmp_path / "peer.spz").version == 3
    back = read_spz(tmp_path / "peer.spz")
    assert np.abs(back.means - splats.means).max() <= 1e-3
    assert np.abs(_colour(back.sh0) - _colour(splats.sh0)).max() <= 2 / 255
    assert np.abs(_sigmoid(back.opacities_logit) - _sigmoid(splats.opacities_logit)).max() \
        <= ALPHA_BOUND + 1e-6
    assert _angle(back.quats, splats.quats).max() <= ROT_V3_BOUND
    # gsply rounds SH to 1/128 without buckets: half a step in RUB, mixed by the rotation
    assert np.abs(enu_to_rub(back).shN - rub.shN).max() <= 0.5 / 128 + 1e-6


# ----------------------------------------------------------------------------------------------
# Bad input


def _payload(version: int = 3, n: int = 1, degree: int = 0) -> bytes:
    rot = 4 if version >= 3 else 3
    body = bytes(n * (9 + 1 + 3 + 3 + rot + 3 * ((degree + 1) ** 2 - 1)))
    return struct.pack("<IIIBBBB", 0x5053474E, version, n, degree, 12, 0, 0) + body


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"ply\nformat binary_little_endian 1.0\n", "not an SPZ file .* 1f 8b"),
        (struct.pack("<II", 0x5053474E, 4) + bytes(40), "version 4 .* zstd .* re-save it as version 3"),
        (gzip.compress(b"hello, this is not a splat file"), "gzip file but not SPZ"),
        (gzip.compress(b"NGSP"), "truncated: 4 bytes"),
        (gzip.compress(_payload(version=5)), "version 5 is not supported .* 2 and 3"),
        (gzip.compress(_payload(version=1)), "version 1 is not supported"),
        (gzip.compress(_payload(degree=4)), "SH degree 4 is not supported"),
        (gzip.compress(_payload(n=10)[:-30]), "truncated: the header announces 10 points"),
        (gzip.compress(_payload(n=10))[:-12], "truncated or corrupt gzip stream"),
    ],
    ids=["empty", "ply", "v4", "gzip-not-spz", "short-header", "v5", "v1", "sh4", "short-data",
         "cut-gzip"],
)
def test_bad_files_give_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.spz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as caught:
        read_spz(path)
    assert "bad.spz" in str(caught.value)


def test_truncated_real_file(tmp_path: Path) -> None:
    path = tmp_path / "d.spz"
    write_spz(path, _district(500))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_spz(path)
    with pytest.raises(ValueError, match="truncated"):
        spz_info(_cut(tmp_path / "d.spz", 12))  # header incomplete
    assert spz_info(_cut(tmp_path / "d.spz", 200)).points == 500  # the header alone suffices


def _cut(path: Path, size: int) -> Path:
    out = path.with_name(f"cut{size}.spz")
    out.write_bytes(path.read_bytes()[:size])
    return out


def test_bad_splats_give_clear_errors(tmp_path: Path) -> None:
    good = _district(10)
    out = tmp_path / "x.spz"

    def variant(**changes: np.ndarray) -> SplatArrays:
        fields = {k: getattr(good, k).copy() for k in
                  ("means", "scales_log", "quats", "opacities_logit", "sh0", "shN")}
        fields.update(changes)
        return SplatArrays(**fields)

    cases = [
        (variant(shN=np.zeros((10, 24, 3), np.float32)), "SH degree 4 .* shN\\[:, :15\\]"),
        (variant(shN=np.zeros((10, 5, 3), np.float32)), "shN: 5 higher SH coefficients"),
        (variant(means=np.zeros((10, 2), np.float32)), r"means must have shape \[N, 3\]"),
        (variant(sh0=np.zeros((9, 1, 3), np.float32)), "sh0 has 9 rows but means has 10"),
        (variant(quats=np.zeros((10, 4), np.float32)), "10 zero quaternion"),
        (variant(opacities_logit=np.full(10, np.nan, np.float32)), "opacities_logit has NaN"),
        (SplatArrays(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 4)), np.zeros(0),
                     np.zeros((0, 1, 3)), np.zeros((0, 0, 3))), "no splats to write"),
    ]
    for splats, message in cases:
        with pytest.raises(ValueError, match=message):
            write_spz(out, splats)
    with pytest.raises(ValueError, match="version 4 cannot be written: choose 3"):
        write_spz(out, good, version=4)
    assert not out.exists()
    # shapes gsplat also uses are accepted: opacities [N, 1], sh0 [N, 3], degree 0
    loose = variant(opacities_logit=good.opacities_logit[:, None], sh0=good.sh0[:, 0],
                    shN=np.zeros((10, 0, 3), np.float32))
    assert write_spz(out, loose).sh_degree == 0
    assert read_spz(out).shN.shape == (10, 0, 3)

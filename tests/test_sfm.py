"""SfM of a district in its ENU frame (citysplat.sfm), scored against ground truth.

Fast tests: intrinsics from the API / EXIF / a guess, screening of bad images (each stage has
its own tests too: tests/test_sfm_*.py). Slow tests (one reconstruction each, shared by the
module): ``shared/data/lund`` (29 phone photos with GPS), ``shared/data/fountain-P11``
(ground-truth cameras) and one district of the generated city (the first car sequence plus the
walking sequence that crosses it), georegistered to the API's noisy positions and compared with
the true poses in ENU, without any alignment to the truth.

Figures measured on this machine (2 CPU cores, default options; the issue note has the global
/ incremental comparison):

* lund: 29/29 registered (GLOMAP), median GPS residual 4.2 m, about 69 s (SIFT first octave
  -1 for its EXIF camera since the 1600 px rule: 4.0 m in 21 s with 0, when incremental
  registered none of it); its principal-point refinement is undone by the drift guard;
* fountain-P11: 11/11, rotation error 0.08 deg, centre error 2.4 mm of a 15.4 m extent, 5 s;
* generated city, 89 images (61 car + 28 walk): 89/89, ENU centre error median 0.17 m,
  rotation 0.15 deg against Mapillary-style computed positions (0.4 m of noise), about 45 s;
  against raw GPS, 61/89 (the walk shares no matches with the car and its GPS cannot place it)
  at 1.1 m and 0.18 deg: the GPS's own correlated error.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.catalog import Catalog
from citysplat.groundtruth import city_true_poses, pose_errors, read_strecha_cameras
from citysplat.layout import SfmLayout, image_file_name, image_id_of
from citysplat.sfm.district import reconstruct_district
from citysplat.sfm.folder import reconstruct_folder
from citysplat.sfm.inputs import SfmInput, fit_camera
from citysplat.sfm.intrinsics import (
    UnsupportedCameraError,
    default_guess,
    from_api,
    from_entity,
    from_exif,
    from_matrix,
    resolve_intrinsics,
)
from citysplat.sfm.quality import ScreeningOptions, check_image, screen_images
from citysplat.sfm.reconstruct import reconstruct
from citysplat.synthetic.cameras import CameraModel

pycolmap = pytest.importorskip("pycolmap")

# acceptance figures of the issue
LUND_MAX_GPS_RESIDUAL_M = 5.0
FOUNTAIN_MAX_ROTATION_DEG = 0.3
FOUNTAIN_MAX_CENTRE_FRACTION = 0.01
CITY_MIN_REGISTERED = 0.98
CITY_MAX_CENTRE_M = 0.3
CITY_MAX_ROTATION_DEG = 0.5


# ------------------------------------------------------------------------------- intrinsics
def test_api_perspective_camera_is_colmap_radial_and_fixed():
    model = CameraModel("perspective", 640, 480, focal=0.7259, k1=-0.0743, k2=0.0197)
    camera = from_api("perspective", model.camera_parameters, 640, 480)
    expected_model, expected_params = model.colmap()
    assert camera.model == expected_model == "RADIAL"
    assert np.allclose(camera.params, expected_params, atol=1e-3)
    assert camera.fixed and camera.source == "api"


def test_api_fisheye_and_spherical_cameras():
    fisheye = from_api("fisheye", [0.5, 0.01, 0.0], 1000, 800)
    assert fisheye.model == "RADIAL_FISHEYE" and fisheye.params[:3] == (500.0, 500.0, 400.0)
    with pytest.raises(UnsupportedCameraError, match="panorama"):
        from_api("spherical", [], 640, 320)
    with pytest.raises(UnsupportedCameraError, match="panorama"):
        resolve_intrinsics(640, 320, camera_type="equirectangular", focal_px=500.0)
    entity = {"id": "1", "width": 640, "height": 320, "camera_type": "spherical",
              "camera_parameters": []}
    with pytest.raises(UnsupportedCameraError):
        from_entity(entity)


def test_intrinsics_fall_back_from_api_to_exif_to_a_guess():
    exif = resolve_intrinsics(1024, 768, focal_px=995.6, focal_source="exif_35mm")
    assert exif.source == "exif" and exif.model == "SIMPLE_RADIAL" and not exif.fixed
    assert exif.params == (995.6, 512.0, 384.0, 0.0)
    guess = resolve_intrinsics(1024, 768)
    assert guess.source == "default" and guess.params[0] == pytest.approx(1.2 * 1024)
    assert "guessed focal" in guess.note
    broken_api = resolve_intrinsics(1024, 768, camera_type="perspective",
                                    camera_parameters=[float("nan")], focal_px=900.0)
    assert broken_api.source == "exif" and "API camera unusable" in broken_api.note
    assert from_exif(900.0, 100, 80).params[1:3] == (50.0, 40.0)
    assert default_guess(300, 400).params[0] == pytest.approx(480.0)
    K = np.array([[2759.5, 0, 1520.7], [0, 2764.2, 1006.8], [0, 0, 1]])
    pinhole = from_matrix(K, 3072, 2048)
    assert pinhole.model == "PINHOLE" and pinhole.fixed and pinhole.params[1] == 2764.2


def test_sfm_input_from_an_api_entity(sample_city):
    meta = {m["id"]: m for m in sample_city.metadata}
    car = next(m for m in sample_city.metadata if m["camera_type"] == "perspective")
    pano = next(m for m in sample_city.metadata if m["camera_type"] == "spherical")
    item = SfmInput.from_entity(car, sample_city.image_path(car["id"]), sample_city.frame)
    truth = np.array(sample_city.cameras[car["id"]]["position_enu"])
    assert item.name == image_file_name(car["id"]) and item.camera.model == "RADIAL"
    assert item.prior_source == "computed" and item.sequence == car["sequence"]
    assert np.linalg.norm(np.array(item.prior_enu) - truth) < 3.0  # computed: ~0.4 m noise
    raw = SfmInput.from_entity(car, sample_city.image_path(car["id"]), sample_city.frame,
                               use_computed=False)
    assert raw.prior_source == "gps" and raw.prior_sigma_m[0] > item.prior_sigma_m[0]
    skipped = SfmInput.from_entity(meta[pano["id"]], sample_city.image_path(pano["id"]),
                                   sample_city.frame)
    assert skipped.camera is None and "panorama" in skipped.unusable


def test_a_thumbnail_gets_the_camera_scaled_to_its_size():
    original = from_api("perspective", [0.8, -0.05, 0.01], 4000, 3000)
    thumb, problem = fit_camera(original, 1024, 768)
    assert problem is None and thumb.params[0] == pytest.approx(0.8 * 1024)
    assert thumb.params[1:3] == pytest.approx((512.0, 384.0)) and thumb.params[3:] == (-0.05, 0.01)
    _, problem = fit_camera(original, 1024, 1024)
    assert "aspect ratio" in problem


# ------------------------------------------------------------------------------- screening
def test_screening_finds_the_generated_citys_bad_images(sample_city, tmp_path):
    bad = {i: c["quality"] for i, c in sample_city.cameras.items() if c["quality"] != "ok"}
    good = [i for i, c in sample_city.cameras.items()
            if c["quality"] == "ok" and c["kind"] != "pano"][:40]
    assert set(bad.values()) == {"blurred", "overexposed", "truncated"}
    paths = {i: sample_city.image_path(i) for i in [*bad, *good]}
    tiny = tmp_path / "tiny.jpg"
    from PIL import Image

    Image.open(sample_city.image_path(good[0])).resize((120, 90)).save(tiny)
    paths["tiny"] = tiny
    checks = screen_images(paths)
    expected = {"truncated": "corrupt", "blurred": "blurred", "overexposed": "overexposed"}
    for image_id, quality in bad.items():
        assert checks[image_id].reason.startswith(expected[quality]), checks[image_id]
    assert checks["tiny"].reason.startswith("tiny")
    assert all(checks[i].ok for i in good), [checks[i].reason for i in good if not checks[i].ok]
    assert check_image(sample_city.image_path(good[0]), ScreeningOptions()).ok


# ------------------------------------------------------------------------------- lund
@pytest.fixture(scope="module")
def lund(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("lund")
    return reconstruct_folder(shared_data / "lund" / "images", out / "out",
                              work_dir=out / "work")


@pytest.mark.slow
def test_lund_registers_every_photo_in_enu(lund):
    metrics = json.loads(lund.metrics_path.read_text())
    print(f"\nlund: {lund.registered_images}/{lund.total_images} registered, median GPS "
          f"residual {lund.gps_residual_median_m:.2f} m, reprojection "
          f"{lund.mean_reprojection_error_px:.2f} px, mappers {metrics['component_mappers']}, "
          f"{lund.seconds:.1f} s {metrics['timings']}\n  {lund.messages}")
    assert lund.registered_images == lund.total_images == 29
    assert lund.georeferenced
    assert lund.gps_residual_median_m <= LUND_MAX_GPS_RESIDUAL_M
    for key in ("registered_images", "total_images", "mean_reprojection_error_px",
                "gps_residual_median_m", "seconds", "mapper", "unusable", "georeferenced"):
        assert key in metrics
    assert metrics["georeferenced"] is True and metrics["unusable"] == {}
    # the model on disk is the georegistered one, in metres: the walk is about 150 m long
    model = pycolmap.Reconstruction(lund.sparse_dir)
    centres = np.array([im.projection_center() for im in model.images.values()])
    assert model.num_reg_images() == 29
    assert 100 < np.ptp(centres[:, :2], axis=0).max() < 250
    assert np.ptp(centres[:, 2]) < 15  # a flat street: up is up
    from citysplat.frames import LocalFrame

    frame = LocalFrame.load(SfmLayout(lund.out_dir).frame_json)
    assert frame.lat0 == pytest.approx(55.698, abs=0.01)
    assert not list(lund.out_dir.glob(".sparse*"))  # no temporary folders left behind


def test_lund_walk_becomes_a_footway_along_the_camera_track(lund, shared_data):
    """The capture network of real photographs: the walk is one pedestrian way, within 3 m of
    the registered camera track along all its length, and SUMO walks people on it."""
    import sumolib
    from shapely.geometry import LineString, Point

    from citysplat.layout import SimLayout
    from citysplat.sim.scenario import ScenarioOptions
    from citysplat.sim.stage import folder_network, run_and_record

    network = folder_network(lund.out_dir, shared_data / "lund" / "images")
    net = sumolib.net.readNet(str(network.net_xml))
    edges = net.getEdges()
    assert edges and all(e.allows("pedestrian") and not e.allows("passenger") for e in edges)
    (track,) = network.capture.tracks
    assert not track.driven and len(track.names) == 29
    walk = LineString(track.xy)
    ways = [LineString(np.asarray(e.getShape())[:, :2]) for e in edges]
    assert max(walk.distance(Point(p)) for w in ways for p in w.coords) < 3.0
    assert max(min(w.distance(Point(c)) for w in ways) for c in track.xy) < 3.0
    assert sum(w.length for w in ways) > 0.9 * walk.length
    result = run_and_record(network, SimLayout(network.net_xml.parent),
                            ScenarioOptions(vehicles=0, pedestrians=10, seconds=120))
    assert result.scenario.teleports == 0 and result.metrics["scenario"]["rows"] > 0


# ------------------------------------------------------------------------------- fountain
@pytest.mark.slow
def test_fountain_poses_match_the_ground_truth(shared_data, tmp_path):
    root = shared_data / "fountain-P11"
    truth = read_strecha_cameras(root / "cameras")
    inputs = [SfmInput(name, root / "images" / name, camera=from_matrix(c.K, c.width, c.height))
              for name, c in truth.items()]
    result = reconstruct(inputs, tmp_path / "work", tmp_path / "out")
    errors = pose_errors(result.poses(), truth)
    centres = np.array([c.center for c in truth.values()])
    extent = float(np.linalg.norm(np.ptp(centres, axis=0)))
    summary = errors.summary()
    print(f"\nfountain-P11: {result.registered_images}/11, rotation median "
          f"{summary['rotation_deg_median']:.3f} deg, centre median "
          f"{summary['center_error_median']:.4f} m of {extent:.1f} m, {result.seconds:.1f} s")
    assert result.registered_images == 11
    assert not result.georeferenced and "cannot georeference" in result.messages[-1]
    assert summary["rotation_deg_median"] <= FOUNTAIN_MAX_ROTATION_DEG
    assert summary["center_error_median"] <= FOUNTAIN_MAX_CENTRE_FRACTION * extent


# ------------------------------------------------------------------------------- the city
def district_of_first_car_sequence(city) -> list[str]:
    """The first car sequence and the walking sequences that come within 15 m of it."""
    sequences = city.sequences()
    car = next(ids for ids in sequences.values() if city.cameras[ids[0]]["kind"] == "car")
    car_xy = np.array([city.cameras[i]["position_enu"][:2] for i in car])
    ids = list(car)
    for seq_ids in sequences.values():
        if city.cameras[seq_ids[0]]["kind"] != "walk":
            continue
        xy = np.array([city.cameras[i]["position_enu"][:2] for i in seq_ids])
        if np.linalg.norm(xy[:, None] - car_xy[None], axis=2).min() < 15.0:
            ids += seq_ids
    return ids


@pytest.fixture(scope="module")
def city_district(sample_city, data_root_of, tmp_path_factory):
    """(data root layout, district name, truth poses, work folder) of the test district: a
    data root holding the city as ingest leaves it, and a district of the first car sequence
    and the walks that meet it, outlined 0.25 m around its images (the district pipeline adds
    any image inside the outline: here, none of another sequence). The work folder's features are shared by
    the tests below."""
    import shapely

    from citysplat.districts.files import write_district
    from citysplat.districts.membership import district_members
    from citysplat.districts.model import District, district_frame
    from citysplat.layout import DataLayout

    ids = district_of_first_car_sequence(sample_city)
    root = data_root_of(sample_city, tmp_path_factory.mktemp("city-root"))
    layout = DataLayout(root)
    enu = np.array([sample_city.cameras[i]["position_enu"] for i in ids])
    outline_enu = shapely.union_all(shapely.buffer(shapely.points(enu[:, :2]), 0.25))
    outline = shapely.transform(outline_enu, lambda c: sample_city.frame.to_lonlat(
        np.column_stack([c, np.zeros(len(c))]))[:, :2])
    with Catalog.open_read_only(layout.catalog_path) as catalog:
        images = catalog.images()
    points = images[images["id"].isin(set(ids))]
    district = District("first-car", outline, sorted(ids), district_frame(outline, points))
    write_district(district, DataLayout(root), images)
    with Catalog.open_read_only(layout.catalog_path) as catalog:
        members = district_members(layout, "first-car", catalog)["id"].tolist()
    truth = city_true_poses(sample_city, district.frame, members)
    return layout, "first-car", truth, tmp_path_factory.mktemp("city") / "work"


def _reconstruct_district(city, district, out_dir, use_computed):
    layout, name, truth, work = district
    outcome = reconstruct_district(layout, name, out_dir=out_dir, work_dir=work,
                                   use_computed=use_computed)
    result = outcome.sfm
    usable = result.total_images - len(result.unusable)
    errors = pose_errors(result.poses(), truth, align=False)  # in ENU: no alignment
    summary = errors.summary()
    metrics = result.metrics
    print(f"\ncity district, {'computed positions' if use_computed else 'raw GPS'}: "
          f"{result.registered_images}/{usable} usable registered ({result.total_images} "
          f"images, {outcome.pairs} pairs = {outcome.pairs / outcome.all_pairs:.1%} of all), ENU "
          f"centre error median {summary['center_error_median']:.3f} m (max "
          f"{summary['center_error_max']:.2f}), rotation median "
          f"{summary['rotation_deg_median']:.3f} deg (max {summary['rotation_deg_max']:.2f}); "
          f"GPS residual {result.gps_residual_median_m:.2f} m; mappers "
          f"{metrics['component_mappers']}; {result.seconds:.1f} s {metrics['timings']}\n"
          f"  {result.messages}")
    return result, usable, summary


@pytest.mark.slow
def test_city_district_in_enu_matches_the_truth(sample_city, city_district, tmp_path):
    ids = [image_id_of(name) for name in city_district[2]]
    kinds = {sample_city.cameras[i]["kind"] for i in ids}
    assert {"car", "walk"} <= kinds and len(ids) >= 60
    # priors: the API's computed_geometry (Mapillary's own SfM positions; 0.4 m of noise in
    # the generated city), never the truth
    result, usable, summary = _reconstruct_district(sample_city, city_district,
                                                    tmp_path / "out", use_computed=True)
    assert result.georeferenced
    assert set(result.metrics["prior_sources"]) == {"computed"}
    assert result.registered_images >= CITY_MIN_REGISTERED * usable
    assert summary["center_error_median"] <= CITY_MAX_CENTRE_M
    assert summary["rotation_deg_median"] <= CITY_MAX_ROTATION_DEG


@pytest.mark.slow
def test_city_district_with_raw_gps_is_as_good_as_the_gps(sample_city, city_district,
                                                          tmp_path):
    """The same district georegistered to the raw ``geometry`` (GPS: 3 m of noise, correlated
    along a sequence, 4 m in height). The centre error is then the GPS's own bias: a sequence's
    errors are an AR(1) series (rho 0.85), whose mean over 61 images still has about 1.2 m of
    noise per axis, so 0.3 m is out of reach for any georegistration; the measured figures are
    1.0-1.2 m and 0.2 deg. The walk, which shares no matches with the car, cannot be placed
    by its raw GPS alone (its slope would be uncertain by 3-6 degrees): it is left out with a
    message instead of being merged at a wrong tilt."""
    result, usable, summary = _reconstruct_district(sample_city, city_district,
                                                    tmp_path / "out", use_computed=False)
    assert result.timings["features"] < 1.0  # the first test's features, reused
    assert result.georeferenced
    assert result.registered_images >= 0.6 * usable
    assert any("left out" in m for m in result.messages) or result.registered_images == usable
    assert summary["center_error_median"] <= 2.0
    assert summary["rotation_deg_median"] <= CITY_MAX_ROTATION_DEG

"""The generated city: reproducible, API-shaped, and its ground truth agrees with its images.

Most checks read the cached ``tiny_city``; reproducibility and the bad-image checks render a small
custom city (one car and one panorama sequence, small images, many bad ones) twice into fresh
temporary caches.
"""

from __future__ import annotations

import io
import math
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from PIL import Image
from scipy import ndimage
from scipy.spatial.transform import Rotation
from shapely.ops import unary_union

from citysplat.fixtures.server import DOCUMENTED_FIELDS
from citysplat.synthetic.cameras import CameraModel, heading_of
from citysplat.synthetic.captures import EPOCH_MS, plan_captures, report
from citysplat.synthetic.city import SyntheticCity, city_frame, generate_city, image_entity
from citysplat.synthetic.layout import ROADWAY_HALF, make_layout
from citysplat.synthetic.render import COVIS_RANGE
from citysplat.synthetic.spec import preset

# The API v4 image fields the generated entities carry (thumb URLs are minted by the server).
ENTITY_FIELDS = {
    "id", "sequence", "captured_at", "geometry", "computed_geometry", "altitude",
    "computed_altitude", "compass_angle", "computed_compass_angle", "computed_rotation",
    "camera_type", "camera_parameters", "make", "model", "width", "height", "is_pano",
    "exif_orientation", "creator", "organization_id", "merge_cc",
}  # fmt: skip

# One car and one panorama sequence, small images, many bad ones: cheap to render twice.
TWIN_SPEC = preset("tiny", car_sequences=1, walk_sequences=0, pano_sequences=1, image_width=320,
                   bad_image_rate=0.4)


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticCity, SyntheticCity]:
    """The same spec generated twice into two fresh caches (process pool, then one process)."""
    a = generate_city(TWIN_SPEC, cache_dir=tmp_path_factory.mktemp("twin_a"))
    b = generate_city(TWIN_SPEC, cache_dir=tmp_path_factory.mktemp("twin_b"), workers=1)
    return a, b


def wrap_deg(d: np.ndarray) -> np.ndarray:
    """Angle differences folded into [-180, 180)."""
    return (np.asarray(d) + 180.0) % 360.0 - 180.0


def enu_xy(city: SyntheticCity, lonlat: list[list[float]]) -> np.ndarray:
    ll = np.asarray(lonlat, np.float64)
    return city.frame.to_enu(ll[:, 0], ll[:, 1])[:, :2]


def gray(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L"), np.float64)


# ------------------------------------------------------------------------------------------
# reproducibility


def test_the_same_spec_renders_byte_identical_cities(twins):
    a, b = twins
    assert a.root != b.root
    assert (a.root / "metadata.json").read_bytes() == (b.root / "metadata.json").read_bytes()
    for name in ("cameras.json", "covisible_pairs.json", "roads.geojson", "buildings.geojson",
                 "walkable.geojson", "frame.json"):
        assert (a.root / "truth" / name).read_bytes() == (b.root / "truth" / name).read_bytes(), name
    ids = [m["id"] for m in a.metadata]
    assert len(ids) >= 20
    for image_id in ids:
        assert a.image_path(image_id).read_bytes() == b.image_path(image_id).read_bytes(), image_id
        assert a.mask_path(image_id).read_bytes() == b.mask_path(image_id).read_bytes(), image_id


def test_another_seed_gives_another_city(twins):
    a, _ = twins
    other = replace(TWIN_SPEC, seed=TWIN_SPEC.seed + 1)
    assert other.key() != TWIN_SPEC.key()
    layout = make_layout(other)
    captures = plan_captures(layout)
    reported = report(captures, layout, city_frame(other))
    entities = {c.image_id: image_entity(c, reported[c.image_id], other) for c in captures}
    assert not set(entities) & {m["id"] for m in a.metadata}, "image ids come from the seed"
    ours = np.array([m["geometry"]["coordinates"] for m in a.metadata])
    theirs = np.array([e["geometry"]["coordinates"] for e in entities.values()])
    assert len(ours) != len(theirs) or not np.allclose(ours, theirs)
    same_layout = make_layout(TWIN_SPEC)
    assert [b.height for b in layout.buildings] != [b.height for b in same_layout.buildings]


def test_the_cached_city_is_what_the_current_code_generates(tiny_city):
    """A cached city is reused by spec key; when the generator's output changes the key must
    change too (bump ``GENERATOR_VERSION``), or every test runs on a stale city."""
    layout = make_layout(tiny_city.spec)
    captures = plan_captures(layout)
    stale = ("the cached city differs from what this code generates: bump GENERATOR_VERSION in "
             f"citysplat/synthetic/spec.py (cache: {tiny_city.root.name})")
    assert [c.image_id for c in captures] == list(tiny_city.cameras), stale
    for c in captures:
        truth = tiny_city.cameras[c.image_id]
        assert np.allclose(c.position, truth["position_enu"], atol=1e-5), stale
        assert np.allclose(c.rotation, truth["rotation_c2w"], atol=1e-8), stale
        assert (c.quality, c.captured_at_ms) == (truth["quality"], truth["captured_at"]), stale


# ------------------------------------------------------------------------------------------
# what the API shows


def test_entities_have_exactly_the_api_v4_fields_with_the_right_types(tiny_city):
    meta = tiny_city.metadata
    assert len(meta) >= 30
    assert [m["id"] for m in meta] == sorted(m["id"] for m in meta)
    assert len({m["id"] for m in meta}) == len(meta)
    # every field is one the server can serve; the organization goes out as `organization`
    assert ENTITY_FIELDS - {"organization_id"} <= DOCUMENTED_FIELDS
    assert "organization" in DOCUMENTED_FIELDS and "organization_id" not in DOCUMENTED_FIELDS
    sequences = tiny_city.sequences()
    for m in meta:
        pano_less = {"camera_parameters"} if m["camera_type"] == "spherical" else set()
        assert set(m) == ENTITY_FIELDS - pano_less, m["id"]
        assert isinstance(m["id"], str) and m["id"].isdigit() and str(int(m["id"])) == m["id"]
        assert isinstance(m["sequence"], str) and m["id"] in sequences[m["sequence"]]
        assert type(m["captured_at"]) is int and m["captured_at"] >= EPOCH_MS
        for key in ("geometry", "computed_geometry"):
            g = m[key]
            assert g["type"] == "Point" and len(g["coordinates"]) == 2
            lon, lat = g["coordinates"]
            assert isinstance(lon, float) and isinstance(lat, float)
            assert abs(lon - tiny_city.spec.lon) < 0.01 and abs(lat - tiny_city.spec.lat) < 0.01
        for key in ("altitude", "computed_altitude", "compass_angle", "computed_compass_angle"):
            assert isinstance(m[key], float), key
        assert 0 <= m["compass_angle"] < 360 and 0 <= m["computed_compass_angle"] < 360
        assert len(m["computed_rotation"]) == 3
        assert all(isinstance(v, float) for v in m["computed_rotation"])
        assert m["camera_type"] in ("perspective", "spherical")
        assert m["is_pano"] is (m["camera_type"] == "spherical")
        if m["camera_type"] == "perspective":
            params = m["camera_parameters"]
            assert len(params) == 3 and all(isinstance(v, float) for v in params)
            focal, k1, k2 = params
            assert 0.5 < focal < 1.2 and abs(k1) < 0.2 and abs(k2) < 0.2
        else:  # spherical images have no camera_parameters (docs/MAPILLARY_API.md)
            assert "camera_parameters" not in m
        assert isinstance(m["make"], str) and isinstance(m["model"], str)
        assert m["exif_orientation"] == 1
        assert set(m["creator"]) == {"id", "username"} and m["creator"]["id"].isdigit()
        assert m["organization_id"] is None
        # merge_cc: one connected component per sequence, beyond what a double holds exactly
        assert type(m["merge_cc"]) is int and 2**53 < m["merge_cc"] < 2**63
        assert len({x["merge_cc"] for x in meta if x["sequence"] == m["sequence"]}) == 1
        assert type(m["width"]) is int and type(m["height"]) is int
        with Image.open(tiny_city.image_path(m["id"])) as im:
            assert im.format == "JPEG"
            assert im.size == (m["width"], m["height"]), m["id"]
        if m["is_pano"]:
            assert m["width"] == 2 * m["height"]


def test_camera_parameters_match_the_true_intrinsics(tiny_city):
    for m in tiny_city.metadata:
        truth = tiny_city.cameras[m["id"]]
        assert (truth["width"], truth["height"], truth["camera_type"]) == (
            m["width"], m["height"], m["camera_type"])
        if m["camera_type"] == "perspective":
            focal, k1, k2 = m["camera_parameters"]
            f, cx, cy, tk1, tk2 = truth["colmap_params"]
            assert truth["colmap_model"] == "RADIAL"
            assert f == pytest.approx(focal * max(m["width"], m["height"]), abs=1e-3)
            assert (cx, cy) == (m["width"] / 2, m["height"] / 2)
            assert (tk1, tk2) == pytest.approx((k1, k2), abs=1e-6)


def _errors_m(city: SyntheticCity, key: str) -> np.ndarray:
    """Horizontal (east, north) error of an entity position vs the true camera centre."""
    meta = city.metadata
    reported = enu_xy(city, [m[key]["coordinates"] for m in meta])
    true = np.array([city.cameras[m["id"]]["position_enu"][:2] for m in meta])
    return reported - true


def test_reported_gps_has_the_configured_noise_and_computed_is_much_tighter(tiny_city):
    spec = tiny_city.spec
    gps = _errors_m(tiny_city, "geometry")
    comp = _errors_m(tiny_city, "computed_geometry")
    gps_rms = float(np.sqrt(np.mean(gps**2)))  # per axis
    comp_rms = float(np.sqrt(np.mean(comp**2)))
    gps_median = float(np.median(np.linalg.norm(gps, axis=1)))
    print(f"\nGPS error per axis RMS {gps_rms:.2f} m (sigma {spec.gps_sigma}), median "
          f"{gps_median:.2f} m; computed RMS {comp_rms:.2f} m (sigma {spec.computed_sigma})")
    # GPS error is correlated along a sequence (few independent draws): a loose band here, a
    # tight one on many sequences below
    assert 0.5 * spec.gps_sigma < gps_rms < 1.6 * spec.gps_sigma
    assert 0.7 * spec.computed_sigma < comp_rms < 1.3 * spec.computed_sigma
    assert comp_rms < gps_rms / 4
    # but no image is exactly where it was
    assert np.all(np.linalg.norm(gps, axis=1) > 1e-3)

    truth = np.array([tiny_city.cameras[m["id"]]["alt"] for m in tiny_city.metadata])
    alt_err = np.array([m["altitude"] for m in tiny_city.metadata]) - truth
    comp_alt_err = np.array([m["computed_altitude"] for m in tiny_city.metadata]) - truth
    assert np.sqrt(np.mean(comp_alt_err**2)) < 1.0 < np.sqrt(np.mean(alt_err**2))


def test_gps_noise_statistics_over_many_sequences():
    """The noise model itself, on the large city's plan (no rendering): per-axis sigma, the
    Rayleigh median sigma * sqrt(2 ln 2), and the correlation along a sequence."""
    spec = preset("large", car_sequences=30, walk_sequences=20, pano_sequences=10)
    layout = make_layout(spec)
    frame = city_frame(spec)
    captures = plan_captures(layout)
    reported = report(captures, layout, frame)
    ll = np.array([reported[c.image_id].lonlat for c in captures])
    err = frame.to_enu(ll[:, 0], ll[:, 1])[:, :2] - np.array([c.position[:2] for c in captures])
    radial = np.linalg.norm(err, axis=1)
    sigma = spec.gps_sigma
    assert len(captures) > 1500
    assert np.std(err[:, 0]) == pytest.approx(sigma, rel=0.2)
    assert np.std(err[:, 1]) == pytest.approx(sigma, rel=0.2)
    assert np.median(radial) == pytest.approx(sigma * math.sqrt(2 * math.log(2)), rel=0.2)
    # consecutive images of a sequence share most of their error (GPS drifts, it does not jump)
    same_seq = np.array([a.sequence_id == b.sequence_id for a, b in zip(captures, captures[1:])])
    lag1 = np.corrcoef(err[:-1][same_seq, 0], err[1:][same_seq, 0])[0, 1]
    assert lag1 > 0.6


def test_compass_noise(tiny_city):
    meta = tiny_city.metadata
    true = np.array([heading_of(np.array(tiny_city.cameras[m["id"]]["rotation_c2w"]))
                     for m in meta])
    err = wrap_deg(np.array([m["compass_angle"] for m in meta]) - true)
    comp = wrap_deg(np.array([m["computed_compass_angle"] for m in meta]) - true)
    sigma = tiny_city.spec.compass_sigma
    rms, comp_rms = float(np.sqrt(np.mean(err**2))), float(np.sqrt(np.mean(comp**2)))
    print(f"\ncompass error RMS {rms:.2f} deg (sigma {sigma}), computed {comp_rms:.2f} deg")
    assert 0.6 * sigma < rms < 1.5 * sigma
    assert comp_rms < 1.0
    assert np.max(np.abs(err)) < 5 * sigma


def test_computed_rotation_is_the_true_world_to_camera_rotation(tiny_city):
    for m in tiny_city.metadata:
        r_c2w = np.array(tiny_city.cameras[m["id"]]["rotation_c2w"])
        assert np.allclose(r_c2w.T @ r_c2w, np.eye(3), atol=1e-6)
        w2c = Rotation.from_rotvec(m["computed_rotation"]).as_matrix()
        assert np.allclose(w2c, r_c2w.T, atol=1e-5), m["id"]


# ------------------------------------------------------------------------------------------
# cameras and poses


@pytest.mark.parametrize(
    "camera",
    [
        CameraModel("perspective", 640, 480, focal=0.72, k1=-0.08, k2=0.02),
        CameraModel("perspective", 320, 240, focal=0.85, k1=-0.03, k2=0.0),
        CameraModel("spherical", 640, 320),
    ],
    ids=["strong-distortion", "phone", "spherical"],
)
def test_project_inverts_rays_to_pixel_centres(camera):
    rays = camera.rays().astype(np.float64)
    h, w = camera.height, camera.width
    assert rays.shape == (h, w, 3)
    assert np.allclose(np.linalg.norm(rays, axis=-1), 1, atol=1e-6)
    uv = camera.project(rays.reshape(-1, 3)).reshape(h, w, 2)
    vv, uu = np.mgrid[0:h, 0:w] + 0.5
    err = np.hypot(uv[..., 0] - uu, uv[..., 1] - vv)
    if camera.camera_type == "spherical":
        # longitude wraps at the seam (u = 0 and u = w are one meridian)
        du = np.abs(uv[..., 0] - uu)
        err = np.hypot(np.minimum(du, w - du), uv[..., 1] - vv)
    assert np.isfinite(err).all()
    assert err.max() < 1e-3, f"worst round trip {err.max():.2e} px"


def test_every_true_camera_reprojects_its_own_rays(tiny_city):
    """Each image's true camera (from its API parameters) maps its rays back to its pixels."""
    seen = set()
    for m in tiny_city.metadata:
        if m["camera_type"] == "perspective":
            focal, k1, k2 = m["camera_parameters"]
            cam = CameraModel("perspective", m["width"], m["height"], focal, k1, k2)
        else:
            cam = CameraModel("spherical", m["width"], m["height"])
        if cam in seen:
            continue
        seen.add(cam)
        uv = cam.project(cam.rays().reshape(-1, 3).astype(np.float64))
        vv, uu = np.mgrid[0:cam.height, 0:cam.width] + 0.5
        du = np.abs(uv[:, 0] - uu.reshape(-1))
        du = np.minimum(du, cam.width - du) if cam.camera_type == "spherical" else du
        assert np.hypot(du, uv[:, 1] - vv.reshape(-1)).max() < 1e-3
    assert len(seen) >= 3


def _mover_rects(layout, truth, cam: CameraModel) -> list[tuple[float, float, float, float]]:
    """Pixel rectangles (u0, v0, u1, v1) covering every mover's box at the capture time."""
    t = (truth["captured_at"] - EPOCH_MS) / 1000.0
    pos = np.array(truth["position_enu"])
    r_c2w = np.array(truth["rotation_c2w"])
    g = np.linspace(-0.5, 0.5, 9)
    gx, gy, gz = np.meshgrid(g, g, g + 0.5, indexing="ij")
    unit = np.column_stack([gx.ravel(), gy.ravel(), gz.ravel()])  # a grid filling the box
    rects = []
    for mover in layout.movers:
        box = mover.box_at(layout.streets[mover.street], t)
        c, s = np.cos(box.yaw), np.sin(box.yaw)
        local = unit * [box.length, box.width, box.height]
        world = np.column_stack([box.x + c * local[:, 0] - s * local[:, 1],
                                 box.y + s * local[:, 0] + c * local[:, 1],
                                 box.z0 + local[:, 2]])
        p_cam = (world - pos) @ r_c2w  # R_c2w^T (X - C), row-wise
        if cam.camera_type == "perspective" and (p_cam[:, 2] <= 0.05).any():
            if (p_cam[:, 2] > 0.05).any():
                rects.append((-np.inf, -np.inf, np.inf, np.inf))  # straddles the image plane
            continue
        uv = cam.project(p_cam)
        u0, v0 = uv.min(axis=0)
        u1, v1 = uv.max(axis=0)
        if cam.camera_type == "spherical" and u1 - u0 > cam.width / 2:
            u0, u1 = -np.inf, np.inf  # wraps around the seam
        rects.append((u0, v0, u1, v1))
    return rects


def test_moving_object_masks_lie_on_the_true_projection_of_the_movers(tiny_city):
    """Every masked pixel is inside the projection (true pose, true camera model) of a moving
    car or pedestrian at that image's capture time: poses, intrinsics, distortion, capture times
    and masks all agree."""
    layout = make_layout(tiny_city.spec)
    checked = 0
    for m in tiny_city.metadata:
        mask = np.asarray(Image.open(tiny_city.mask_path(m["id"]))) > 127
        if mask.sum() < 20:
            continue
        truth = tiny_city.cameras[m["id"]]
        cam = (CameraModel("perspective", m["width"], m["height"], *m["camera_parameters"])
               if m["camera_type"] == "perspective"
               else CameraModel("spherical", m["width"], m["height"]))
        covered = np.zeros_like(mask)
        vv, uu = np.mgrid[0:cam.height, 0:cam.width] + 0.5
        for u0, v0, u1, v1 in _mover_rects(layout, truth, cam):
            covered |= (uu >= u0 - 1.5) & (uu <= u1 + 1.5) & (vv >= v0 - 1.5) & (vv <= v1 + 1.5)
        outside = int((mask & ~covered).sum())
        assert outside <= 0.01 * mask.sum(), (m["id"], outside, int(mask.sum()))
        checked += 1
    assert checked >= 5


def test_moving_objects_are_masked_and_move_between_images(tiny_city):
    sizes, fractions, changed, pairs = [], [], 0, 0
    for ids in tiny_city.sequences().values():
        masks = [np.asarray(Image.open(tiny_city.mask_path(i))) for i in ids]
        for i, mask in zip(ids, masks):
            assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
            with Image.open(tiny_city.image_path(i)) as im:
                assert mask.shape == (im.height, im.width)
            sizes.append(int((mask > 0).sum()))
            fractions.append(float((mask > 0).mean()))
        for a, b in zip(masks, masks[1:]):
            if (a > 0).any() and (b > 0).any():
                pairs += 1
                changed += not np.array_equal(a, b)
    sizes = np.array(sizes)
    assert (sizes > 50).mean() > 0.2, "moving cars and people show up in many images"
    assert (sizes == 0).any(), "and some images have none"
    assert max(fractions) < 0.5, "movers are kept clear of the lens"
    assert pairs >= 5 and changed == pairs

    # the movers themselves are elsewhere at the next capture
    layout = make_layout(tiny_city.spec)
    for ids in tiny_city.sequences().values():
        t0, t1 = ((tiny_city.cameras[i]["captured_at"] - EPOCH_MS) / 1000 for i in ids[:2])
        for mover in layout.movers:
            street = layout.streets[mover.street]
            a, b = mover.box_at(street, t0), mover.box_at(street, t1)
            assert math.hypot(a.x - b.x, a.y - b.y) > 0.1


# ------------------------------------------------------------------------------------------
# bad images


def test_bad_images_are_bad_the_way_they_say(twins):
    city, _ = twins
    cams = city.cameras
    bad = {i: c["quality"] for i, c in cams.items() if c["quality"] != "ok"}
    assert set(bad.values()) == {"blurred", "overexposed", "truncated"}, bad
    seqs = city.sequences()
    for image_id, quality in bad.items():
        ids = seqs[cams[image_id]["sequence"]]
        k = ids.index(image_id)
        near_ok = sorted((abs(n - k), j) for n, j in enumerate(ids) if cams[j]["quality"] == "ok")
        neighbours = [j for d, j in near_ok[:4] if d <= 6]  # the same street, moments apart
        assert len(neighbours) >= 2, image_id
        path = city.image_path(image_id)
        if quality == "truncated":
            data = path.read_bytes()
            assert data[:2] == b"\xff\xd8" and not data.endswith(b"\xff\xd9")
            with Image.open(io.BytesIO(data)) as im:
                assert im.size == (cams[image_id]["width"], cams[image_id]["height"])
                with pytest.raises(OSError):
                    im.load()
        elif quality == "blurred":
            lap = ndimage.laplace(gray(path)).var()
            near = np.median([ndimage.laplace(gray(city.image_path(j))).var() for j in neighbours])
            assert lap < 0.2 * near, (image_id, lap, near)
        else:
            img, near = gray(path), [gray(city.image_path(j)) for j in neighbours]
            assert img.mean() > 1.3 * np.median([n.mean() for n in near]), image_id
            assert (img >= 250).mean() > 0.15 + max((n >= 250).mean() for n in near), image_id
    for image_id in cams:
        if image_id not in bad:
            with Image.open(city.image_path(image_id)) as im:
                im.load()  # every good image decodes in full


def test_the_tiny_city_images_decode_unless_truncated(tiny_city):
    for image_id, cam in tiny_city.cameras.items():
        with Image.open(tiny_city.image_path(image_id)) as im:
            if cam["quality"] == "truncated":
                with pytest.raises(OSError):
                    im.load()
            else:
                im.load()


# ------------------------------------------------------------------------------------------
# the map


def _to_enu(city: SyntheticCity, geoms: gpd.GeoSeries) -> gpd.GeoSeries:
    def fn(ll: np.ndarray) -> np.ndarray:
        return city.frame.to_enu(ll[:, 0], ll[:, 1])[:, :2]

    return gpd.GeoSeries([shapely.transform(g, fn) for g in geoms])


def test_truth_geojson_roads_buildings_and_walkable_area_are_consistent(tiny_city):
    truth = tiny_city.root / "truth"
    roads = gpd.read_file(truth / "roads.geojson")
    buildings = gpd.read_file(truth / "buildings.geojson")
    walkable = gpd.read_file(truth / "walkable.geojson")
    for frame in (roads, buildings, walkable):
        assert frame.crs is not None and frame.crs.to_epsg() == 4326
        assert len(frame) > 0 and frame.geometry.is_valid.all()
    assert set(roads.geom_type) == {"LineString"}
    assert set(buildings.geom_type) == {"Polygon"}
    assert set(walkable.geom_type) <= {"Polygon", "MultiPolygon"}
    assert (buildings["height_m"] > 3).all()

    road_enu = _to_enu(tiny_city, roads.geometry)
    roadway = unary_union(road_enu.buffer(ROADWAY_HALF, cap_style="flat"))
    houses = _to_enu(tiny_city, buildings.geometry)
    walk = unary_union(_to_enu(tiny_city, walkable.geometry))
    assert houses.is_valid.all() and walk.is_valid and roadway.is_valid
    # buildings stay off the roadway and off the sidewalks, and do not overlap each other
    assert houses.intersection(roadway).area.sum() < 1e-3
    assert houses.intersection(walk).area.sum() < 1e-3
    assert houses.area.sum() == pytest.approx(unary_union(houses).area, rel=1e-6)
    # a building line runs along every street: some facade is at the building line
    to_centre = houses.distance(unary_union(road_enu))
    assert to_centre.min() == pytest.approx(tiny_city.spec.street_w / 2, abs=0.05)
    # sidewalks: as long as the streets, about (street_w / 2 - ROADWAY_HALF) wide on each side
    sidewalk_w = tiny_city.spec.street_w / 2 - ROADWAY_HALF
    assert walk.area > road_enu.length.sum() * sidewalk_w  # both sides, less the crossings
    assert walk.difference(roadway).area > 0.8 * walk.area  # crosswalks are a small part

    # cars drive on the roadway, people walk on the walkable area (or cross the street)
    for cam in tiny_city.cameras.values():
        p = shapely.Point(cam["position_enu"][:2])
        if cam["kind"] in ("car", "pano"):
            assert roadway.buffer(0.05).contains(p), cam["id"]
    walkers = [shapely.Point(c["position_enu"][:2]) for c in tiny_city.cameras.values()
               if c["kind"] == "walk"]
    if walkers:
        on_walk = np.mean([walk.buffer(0.5).contains(p) for p in walkers])
        assert on_walk > 0.8


# ------------------------------------------------------------------------------------------
# co-visibility


def test_covisible_pairs_follow_the_sequences_and_distance(tiny_city):
    pairs = {(a, b): n for a, b, n in tiny_city.covisible}
    assert pairs and all(a < b for a, b in pairs)
    cams = tiny_city.cameras
    pos = {i: np.array(c["position_enu"]) for i, c in cams.items()}
    for ids in tiny_city.sequences().values():
        if cams[ids[0]]["kind"] != "car":
            continue
        for a, b in zip(ids, ids[1:]):
            assert tuple(sorted((a, b))) in pairs, (a, b)
    # a surface cell is seen from at most COVIS_RANGE: pairs farther apart than twice that
    # never share one (the city is small; 300 m apart is a stronger distance than it has)
    limit = 2 * COVIS_RANGE
    ids = sorted(cams)
    far = [(a, b) for k, a in enumerate(ids) for b in ids[k + 1:]
           if np.linalg.norm(pos[a][:2] - pos[b][:2]) > limit]
    assert len(far) > 50, "the city is large enough for the check to mean something"
    assert not [p for p in far if p in pairs]
    assert max(np.linalg.norm(pos[a] - pos[b]) for a, b in pairs) <= limit


def test_a_truth_only_city_has_the_rendered_citys_metadata_and_covisibility(tiny_city, tmp_path):
    """Generated without images (how the 2,000-image xl city is scored), a city has the same
    entities, cameras and co-visible pairs as when rendered: the same rays decide them."""
    truth = generate_city(tiny_city.spec, cache_dir=tmp_path, images=False)
    assert truth.root.name == tiny_city.root.name + "-truth"
    assert not (truth.root / "images").exists() and not (truth.root / "truth/masks").exists()
    assert truth.metadata == tiny_city.metadata
    assert truth.cameras == tiny_city.cameras
    assert len(tiny_city.covisible) > 100
    assert truth.covisible == tiny_city.covisible

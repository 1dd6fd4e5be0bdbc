"""What a generated city is made from: a seed, a place and a size. Same spec, same city."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path

#: The output format's version; the cache key also hashes the generator's own source files, so
#: any change to how a city is made gives new keys (a stale cached city can never be served).
GENERATOR_VERSION = 3


@cache
def generator_fingerprint() -> str:
    """A hash of every source file of ``citysplat.synthetic``."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]

# A few blocks of San Francisco's Sunset District (around 39th Avenue and Quintara Street),
# placed so that a corner of four z14 coverage tiles falls inside the city: ingest, coverage
# and new-imagery code then meet tile boundaries even in the smallest city.
SUNSET_LON = -122.49780
SUNSET_LAT = 37.75360
SUNSET_GROUND_ALT_M = 22.0  # ellipsoidal height of the street (WGS84), metres


@dataclass(frozen=True)
class CitySpec:
    """Parameters of a generated city. All lengths in metres, angles in degrees."""

    seed: int = 7
    lon: float = SUNSET_LON
    lat: float = SUNSET_LAT
    ground_alt: float = SUNSET_GROUND_ALT_M
    blocks_x: int = 2  # blocks east-west
    blocks_y: int = 2  # blocks north-south
    block_w: float = 64.0  # east-west extent of a block
    block_h: float = 84.0  # north-south extent of a block
    street_w: float = 20.0  # building line to building line (roadway 12 m + two 4 m sidewalks)
    kerb_height: float = 0.15  # sidewalks and blocks stand this high above the roadway (0: flat)
    image_width: int = 640
    car_sequences: int = 3
    walk_sequences: int = 2
    pano_sequences: int = 1
    car_spacing: tuple[float, float] = (2.5, 4.0)  # metres between consecutive car images
    walk_spacing: tuple[float, float] = (2.0, 3.0)
    pano_spacing: float = 7.0
    car_route: float = 160.0  # metres driven per car sequence
    walk_route: float = 62.0
    pano_route: float = 100.0
    gps_sigma: float = 3.0  # original geometry noise (metres, 1 sigma)
    computed_sigma: float = 0.4  # computed_geometry noise (metres)
    compass_sigma: float = 6.0  # compass_angle noise (degrees)
    bad_image_rate: float = 0.03  # blurred, over-exposed or truncated images
    moving_cars: int = 24
    pedestrians: int = 30
    parked_car_rate: float = 0.35  # parked cars per metre of kerb x 10

    def key(self) -> str:
        """A short stable hash of the spec and generator version, used as the cache key."""
        payload = json.dumps({"v": GENERATOR_VERSION, "code": generator_fingerprint(),
                              **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"generator_version": GENERATOR_VERSION, **asdict(self)}


PRESETS: dict[str, CitySpec] = {
    # One block, two short car sequences: seconds to render, for unit tests.
    # Flat (no kerbs): its one walk is a straight 40 m line whose georegistration sits at the
    # edge of what SfM accepts, and the kerbs' extra edges tip it over; the kerbed tiny city
    # is preset("tiny", kerb_height=0.15).
    "tiny": CitySpec(
        blocks_x=1, blocks_y=1, car_sequences=2, walk_sequences=1, pano_sequences=1,
        car_route=70.0, walk_route=40.0, pano_route=60.0, moving_cars=8, pedestrians=8,
        kerb_height=0.0,
    ),
    # The demo city: about 200 images.
    "default": CitySpec(),
    # A larger neighbourhood for benchmarks.
    "large": CitySpec(blocks_x=4, blocks_y=3, car_sequences=8, walk_sequences=5, pano_sequences=2,
                      moving_cars=24, pedestrians=30),
    # Four times the large one, to score pair selection on a district of 2,000+ images
    # (generate it with images=False: rendering it takes hours on two cores).
    "xl": CitySpec(blocks_x=8, blocks_y=6, car_sequences=32, walk_sequences=20, pano_sequences=8,
                   moving_cars=96, pedestrians=120),
}


def preset(name: str, **overrides) -> CitySpec:
    """A named size (``tiny``, ``default``, ``large``, ``xl``) with optional field overrides."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown city size {name!r}: choose one of {', '.join(sorted(PRESETS))}"
        ) from None
    return replace(base, **overrides)

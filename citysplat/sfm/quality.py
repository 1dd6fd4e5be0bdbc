"""Screening of unusable images before SfM: corrupt, tiny, blurred, badly exposed.

A bad image costs SfM more than its share: a truncated JPEG aborts feature extraction, a blurred
one gives few and wrong matches, a blown-out one matches nothing. Each image is decoded once (in
a thread pool: Pillow's decoder releases the GIL), reduced to a working size, and measured:

* ``corrupt``: Pillow cannot decode it to the end (truncated download, not an image);
* ``tiny``: shorter side below ``min_side`` pixels;
* ``blurred``: variance of the Laplacian at the working size below ``min_sharpness``, or below
  ``relative_sharpness`` x the batch median (a scene-relative test: the same threshold does not
  fit a textured facade and a plain wall);
* ``overexposed`` / ``underexposed``: more than ``max_clipped`` of the pixels at 250+ / 5-.

Measured on the generated city (640 px images): sharp images have a Laplacian variance of
125-900, a blurred one 1.7; an over-exposed one has 48% of its pixels clipped, sharp ones none.
Street photos of ``shared/data/lund`` (1024 px): 560-890, at most 2% clipped.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

__all__ = ["ImageCheck", "ScreeningOptions", "check_image", "screen_images"]


@dataclass(frozen=True)
class ScreeningOptions:
    """Thresholds of :func:`screen_images` (see the module docstring for the measurements)."""

    min_side: int = 200
    working_size: int = 640  # longer side at which sharpness is measured
    min_sharpness: float = 15.0
    relative_sharpness: float = 0.08  # x the batch median; needs >= 8 images to apply
    max_clipped: float = 0.4
    workers: int = 4


@dataclass(frozen=True)
class ImageCheck:
    """What screening found in one image; ``reason`` is None for a usable image."""

    path: Path
    reason: str | None
    width: int = 0
    height: int = 0
    sharpness: float = float("nan")
    overexposed: float = 0.0
    underexposed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.reason is None


def _measure(path: Path, options: ScreeningOptions) -> ImageCheck:
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                width, height = image.size  # as stored: what COLMAP reads
                if min(width, height) < options.min_side:
                    return ImageCheck(path, f"tiny: {width}x{height} px, shorter side below "
                                            f"{options.min_side} px", width, height)
                scale = options.working_size / max(width, height)
                if image.format in ("JPEG", "MPO") and scale < 0.5:
                    image.draft("L", (int(width * scale), int(height * scale)))
                gray = image.convert("L")
                if max(gray.size) > options.working_size:
                    size = (max(1, round(width * scale)), max(1, round(height * scale)))
                    gray = gray.resize(size, Image.Resampling.BILINEAR)
    except FileNotFoundError:
        return ImageCheck(path, "corrupt: file not found")
    except UnidentifiedImageError:
        return ImageCheck(path, "corrupt: not an image Pillow can read")
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        return ImageCheck(path, f"corrupt: cannot decode ({exc})")
    pixels = np.asarray(gray, dtype=np.float32)
    sharpness = float(ndimage.laplace(pixels).var())
    over = float((pixels >= 250).mean())
    under = float((pixels <= 5).mean())
    reason = None
    if sharpness < options.min_sharpness:
        reason = (f"blurred: Laplacian variance {sharpness:.1f} below {options.min_sharpness:g}")
    elif over > options.max_clipped:
        reason = f"overexposed: {over:.0%} of pixels clipped white"
    elif under > options.max_clipped:
        reason = f"underexposed: {under:.0%} of pixels clipped black"
    return ImageCheck(path, reason, width, height, sharpness, over, under)


def check_image(path: str | Path, options: ScreeningOptions | None = None) -> ImageCheck:
    """Screen one image with the absolute thresholds only."""
    return _measure(Path(path), options or ScreeningOptions())


def screen_images(paths: Mapping[str, str | Path],
                  options: ScreeningOptions | None = None) -> dict[str, ImageCheck]:
    """Screen images (name -> path); returns name -> :class:`ImageCheck`, in input order."""
    options = options or ScreeningOptions()
    names = list(paths)
    with ThreadPoolExecutor(max(1, options.workers)) as pool:
        checks = list(pool.map(lambda n: _measure(Path(paths[n]), options), names))
    out = dict(zip(names, checks))
    sharp = [c.sharpness for c in checks if c.ok]
    if len(sharp) >= 8 and options.relative_sharpness > 0:
        floor = options.relative_sharpness * float(np.median(sharp))
        for name, check in out.items():
            if check.ok and check.sharpness < floor:
                out[name] = ImageCheck(
                    check.path, f"blurred: Laplacian variance {check.sharpness:.1f} below "
                                f"{options.relative_sharpness:g} x the batch median "
                                f"({floor:.1f})",
                    check.width, check.height, check.sharpness, check.overexposed,
                    check.underexposed)
    return out

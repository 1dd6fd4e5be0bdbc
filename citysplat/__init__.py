"""citysplat: street-level imagery of a whole city to simulation-ready 3D assets.

The SDK is plain Python (no Dagster import anywhere below this package): each stage is a
function or a small class that takes typed inputs and a destination and returns a typed result.
"""

# pycolmap's bundled zlib aborts the process ("free(): invalid pointer") when pycolmap is
# imported before anything else has loaded zlib; importing it here first avoids that.
import zlib  # noqa: F401,E402

__version__ = "0.1.0"

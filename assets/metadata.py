"""Metadata helpers shared by the assets."""

import base64
from pathlib import Path

import dagster as dg


def png_markdown(path: Path, alt: str) -> dg.MetadataValue:
    """A PNG file as a markdown metadata value (inline, so the Dagster UI shows it on the
    asset's page)."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")

"""The Khronos glTF validator (npm ``gltf-validator``, pinned in ``tests/gltf_validator``), run
with the machine's Node.js from the tests that write glTF files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

VALIDATOR_DIR = Path(__file__).resolve().parent / "gltf_validator"


def pinned_validator_version() -> str:
    package = json.loads((VALIDATOR_DIR / "package.json").read_text())
    return package["dependencies"]["gltf-validator"]


def _validator_missing() -> str | None:
    """Why the validator cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node (Node.js 18+) is not on PATH"
    installed = VALIDATOR_DIR / "node_modules" / "gltf-validator" / "package.json"
    if not installed.is_file():
        return "the gltf-validator npm package is not installed"
    version = json.loads(installed.read_text())["version"]
    if version != pinned_validator_version():
        return f"gltf-validator {version} is installed, but package.json pins " \
               f"{pinned_validator_version()}"
    return None


def khronos_validate(*files: Path) -> list[dict]:
    """The Khronos validator's JSON report for each file. Without node or the pinned validator
    the test fails on CI (``CI=true``) and is skipped elsewhere."""
    missing = _validator_missing()
    if missing:
        message = (f"{missing}: run `npm ci --prefix tests/gltf_validator` "
                   "(scripts/bootstrap.sh test does it)")
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        ["node", str(VALIDATOR_DIR / "validate.mjs"), *map(str, files)],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode in (0, 1), f"validator failed to run:\n{result.stderr}"
    reports = json.loads(result.stdout)
    assert len(reports) == len(files)
    return reports


def assert_clean(report: dict) -> None:
    """No error and no warning in a validator report."""
    issues = report["issues"]
    listed = json.dumps(issues["messages"], indent=1)
    assert issues["numErrors"] == 0, f"{report['uri']}: validator errors:\n{listed}"
    assert issues["numWarnings"] == 0, f"{report['uri']}: validator warnings:\n{listed}"

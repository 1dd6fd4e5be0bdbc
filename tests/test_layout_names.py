"""No module outside ``citysplat/layout.py`` spells a file or folder name of the data root.

The names are read from layout.py itself (every string literal there that names a file or
folder), then every module of the SDK and the Dagster wrappers is parsed (``ast``) for:

- a string literal equal to a data-root *file* name (``"metrics.json"``), or ending with one
  after a ``/`` (``"checkpoints/latest.pt"``);
- a data-root *folder* name (``"sparse"``) used to build a path: an operand of ``/``, or an
  argument of ``Path(...)``, ``.joinpath(...)``, ``os.path.join(...)``;
- an f-string building an image or mask file name from an id (``f"{image_id}.jpg"``).

Docstrings and comments are prose, not paths: they are not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import citysplat.layout as layout_module
from citysplat.layout import DataLayout, image_file_name, image_id_of

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("citysplat", "assets", "sensors")

# Deliberate exceptions: (path relative to the repository, why).
EXCEPTIONS: dict[str, str] = {
    "citysplat/layout.py": "the owner of the names",
    "citysplat/synthetic": "the generated city's own cache folder (images/, truth/), which is "
                           "not a data root; its layout is the city's, kept in city.py",
    "citysplat/fixtures/server.py": "URL paths of the Mapillary API it serves (/thumbs/<id>/"
                                    "<size>.jpg), not files",
    "citysplat/sfm/model_files.py": "COLMAP's own model format (cameras/images/points3D "
                                    ".bin/.txt): names of COLMAP's, not of the data root",
    "citysplat/splat/data.py": "reads COLMAP models (images.bin / images.txt are COLMAP's "
                               "names) and a user's mask folder",
    "citysplat/splat/dataset_export.py": "writes a standard COLMAP dataset for other trainers "
                                         "(images/, masks/, sparse/0), not the data root",
    "citysplat/photos.py": "the suffixes of a user's own photos",
}

# COLMAP's model files share a name with the district's image list; that one name is checked
# only outside the COLMAP readers listed above, like every other.
COLMAP_NAMES = frozenset({"cameras.bin", "images.bin", "points3D.bin", "frames.bin",
                          "rigs.bin"})


def _layout_names() -> tuple[set[str], set[str]]:
    """(file names, folder names) spelled in layout.py."""
    tree = ast.parse(Path(layout_module.__file__).read_text())
    docstrings = _docstring_nodes(tree)
    files, folders = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            text = node.value
            if not text or " " in text or "/" in text or "{" in text:
                continue
            if "." in text.strip("."):
                files.add(text)
            elif text.startswith(".") or text.replace("-", "").replace("_", "").isalnum():
                folders.add(text)
    files -= {".jpg"}  # the suffix rule is checked through f-strings below
    folders -= {"districts"} | {n for n in folders if n.isupper()}
    return files, folders | {"districts"}


def _docstring_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            out.add(id(node.value))  # bare strings: attribute docs
    return out


def _exempt(rel: str) -> bool:
    return any(rel == k or rel.startswith(k + "/") for k in EXCEPTIONS)


def _path_building_strings(tree: ast.AST) -> list[ast.Constant]:
    """String literals used as a path segment."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            out += [n for n in (node.left, node.right) if isinstance(n, ast.Constant)]
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in {"Path", "PurePath", "joinpath", "join"}:
                out += [a for a in node.args if isinstance(a, ast.Constant)]
    return [n for n in out if isinstance(n.value, str)]


def _violations_in(rel: str, source: str, files: set[str], folders: set[str]) -> list[str]:
    """Where the module ``rel`` (its text: ``source``) spells a data-root name."""
    tree = ast.parse(source, filename=rel)
    docstrings = _docstring_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            text = node.value
            last = text.rsplit("/", 1)[-1]
            if (text in files or (last in files and "/" in text)) and last not in COLMAP_NAMES:
                found.append(f"{rel}:{node.lineno}: {text!r}")
        if isinstance(node, ast.JoinedStr) and len(node.values) == 2:
            head, tail = node.values
            if isinstance(head, ast.FormattedValue) and isinstance(tail, ast.Constant) \
                    and tail.value in (".jpg", ".png"):
                found.append(f"{rel}:{node.lineno}: f-string file name ...{tail.value!r}")
    for node in _path_building_strings(tree):
        if node.value in folders:
            found.append(f"{rel}:{node.lineno}: folder {node.value!r} in a path")
    return found


def _violations() -> list[str]:
    files, folders = _layout_names()
    found = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if not _exempt(rel):
                found += _violations_in(rel, path.read_text(), files, folders)
    return found


def test_layout_names_are_found():
    """The scan knows the names it looks for (a scan that finds nothing to look for cannot
    fail)."""
    files, folders = _layout_names()
    assert {"catalog.duckdb", "frame.json", "images.txt", "pairs.txt", "metrics.json",
            "point_cloud.ply", "navmesh.json", "network.net.xml", "index.json"} <= files
    assert {"sparse", "work", "splat", "mesh", "sim", "masks", "images", "reports",
            "districts"} <= folders


def test_no_module_outside_layout_spells_a_data_root_name():
    assert _violations() == []


def test_the_scan_catches_a_spelled_name():
    """A module that spells names the layout owns is caught, each way."""
    probe = ('from pathlib import Path\n\n'
             'def f(root, i):\n'
             '    """Writes metrics.json (prose: not a path)."""\n'
             '    return (root / "sparse", Path(root, "metrics.json"),\n'
             '            f"{i}.jpg", "checkpoints/latest.pt", {"images": 3})\n')
    hits = _violations_in("citysplat/probe.py", probe, *_layout_names())
    assert len(hits) == 4, hits


def test_image_file_names_round_trip():
    assert image_file_name("123") == "123.jpg"
    assert image_id_of("123.jpg") == "123" and image_id_of("a/b/123.jpg") == "123"
    assert DataLayout.relative_image_path("4567") == "images/45/4567.jpg"
    with pytest.raises(ValueError, match="not alphanumeric"):
        DataLayout.relative_image_path("../etc")


def test_district_layout_refuses_unsafe_names(tmp_path):
    layout = DataLayout(tmp_path)
    assert layout.district("d001-a").dir == tmp_path / "districts" / "d001-a"
    for bad in ("../escape", "CON", "a" * 101, "x."):
        with pytest.raises(ValueError, match="not usable as a folder"):
            layout.district(bad)

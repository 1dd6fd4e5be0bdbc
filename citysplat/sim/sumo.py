"""Eclipse SUMO as the PyPI wheels install it: where its binaries are and how to run them.

The ``eclipse-sumo`` wheel carries ``netconvert`` and ``sumo`` under ``sumo.SUMO_HOME`` and its
own PROJ database (``data/proj``); netconvert needs ``PROJ_DATA`` pointing there to project
lon/lat (OSM imports). ``libsumo`` runs the simulation in-process.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


class SumoError(RuntimeError):
    """SUMO is missing, or one of its tools rejected its input (the message says which)."""


def sumo_home() -> Path:
    """The installed SUMO's home folder (``eclipse-sumo``'s, or ``$SUMO_HOME``)."""
    try:
        import sumo  # the eclipse-sumo wheel
    except ImportError:
        home = os.environ.get("SUMO_HOME")
        if not home:
            raise SumoError("Eclipse SUMO is not installed: pip install 'citysplat' installs "
                            "eclipse-sumo; or set SUMO_HOME to a SUMO installation") from None
        return Path(home)
    return Path(sumo.SUMO_HOME)


def sumo_env() -> dict[str, str]:
    """The environment SUMO's tools need: ``SUMO_HOME`` and PROJ's database."""
    home = sumo_home()
    env = dict(os.environ, SUMO_HOME=str(home))
    proj = home / "data" / "proj"
    if (proj / "proj.db").is_file():
        env["PROJ_DATA"] = str(proj)
        env["PROJ_LIB"] = str(proj)
    return env


def binary(name: str) -> Path:
    """A SUMO binary (``netconvert``, ``sumo``) of the installed SUMO."""
    path = sumo_home() / "bin" / name
    if not path.is_file():
        raise SumoError(f"{name} is missing from the SUMO installation at {sumo_home()}: "
                        "reinstall eclipse-sumo")
    return path


def run_tool(name: str, args: list[str], cwd: Path | None = None) -> str:
    """Run a SUMO tool; its output, or :class:`SumoError` with the lines that say why it failed."""
    proc = subprocess.run([str(binary(name)), *args], cwd=cwd, env=sumo_env(),
                          capture_output=True, text=True)
    out = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode != 0:
        errors = [line for line in out.splitlines() if "Error" in line] or out.splitlines()[-5:]
        raise SumoError(f"{name} failed: " + " | ".join(errors[:5]))
    return out

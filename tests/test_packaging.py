"""`pip install .` gives an embedder what `requirements.txt` gives this repository: the same
runtime dependencies (ranges there, pins here) and every package of the server."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _names(lines: list[str]) -> set[str]:
    found = set()
    for line in lines:
        match = NAME.match(line)
        if match and not line.lstrip().startswith(("#", "-")):
            found.add(match.group(1).lower().replace("_", "-"))
    return found


def test_the_package_depends_on_what_requirements_pin() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = _names(project["project"]["dependencies"])
    pinned = _names((ROOT / "requirements.txt").read_text().splitlines())
    assert declared == pinned


def test_every_package_of_the_server_is_installed() -> None:
    """What setuptools will package, by the pyproject's rule, is every package on disk."""
    from setuptools import find_packages

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    on_disk = {
        str(init.parent.relative_to(ROOT)).replace("/", ".")
        for top in ("server", "storage", "authclient")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert {"server.dialects", "server.handlers"} <= on_disk
    assert set(find_packages(where=str(ROOT), include=include)) == on_disk

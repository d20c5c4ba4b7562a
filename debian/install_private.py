#!/usr/bin/python3
"""Install the ishowttsd Python package into a private directory, with its dist-info metadata.

    python3 debian/install_private.py SOURCE_ROOT DEST_LIB_DIR

The package is pure Python, so "building" it is copying it. Metadata (name, version, Python
requirement, dependencies) comes from pyproject.toml through tomllib, not from setuptools:
Debian 12's setuptools (66) cannot read the PEP 639 `license = "MIT"` string, and the runtime venv
only needs `importlib.metadata.requires("ishowttsd")` and `version("ishowttsd")` to work.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import tomllib

PACKAGE = "ishowttsd"
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


def metadata_text(project: dict[str, Any]) -> str:
    """Core metadata (METADATA file) of the project table of pyproject.toml."""
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {project['version']}",
             f"Summary: {project.get('description', '')}"]
    if "requires-python" in project:
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {requirement}" for requirement in project.get("dependencies", [])]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f"Requires-Dist: {_with_extra(req, extra)}" for req in requirements]
    return "\n".join(lines) + "\n"


def _with_extra(requirement: str, extra: str) -> str:
    marker = f'extra == "{extra}"'
    return f"{requirement} and {marker}" if ";" in requirement else f"{requirement}; {marker}"


def install(source: Path, dest: Path) -> None:
    project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    shutil.copytree(source / PACKAGE, dest / PACKAGE, ignore=SKIPPED)
    dist_info = dest / f"{PACKAGE}-{project['version']}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(metadata_text(project))
    (dist_info / "INSTALLER").write_text("dpkg\n")


if __name__ == "__main__":
    install(Path(sys.argv[1]), Path(sys.argv[2]))

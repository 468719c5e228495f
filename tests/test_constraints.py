"""Two fresh machines install the same versions: every dependency the project names is pinned in
constraints.txt, and `make install` installs through it (issue: pin what a fresh machine installs)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement line (PEP 503)."""
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip()).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        assert "==" in line, f"constraints.txt: {line!r} is not an exact pin (name==version)"
        name = _name(line)
        assert name not in pins, f"constraints.txt: {name} pinned twice"
        pins[name] = line.split("==", 1)[1]
    return pins


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "training" / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        names |= {_name(r) for r in extra}
    for line in (ROOT / "requirements-dev.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(_name(line))
    return names


def test_every_declared_dependency_is_pinned():
    pins = _pins()
    missing = sorted(_declared() - set(pins))
    assert not missing, f"constraints.txt lacks {missing}: install them, then run `make lock`"


def test_torch_is_pinned_to_the_cpu_build_on_disk():
    assert _pins()["torch"] == "2.13.0"


def test_make_install_uses_the_constraints_for_every_pip_install():
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "$(PIP) install" in line]
    assert installs and all("-c $(CONSTRAINTS)" in line for line in installs), installs

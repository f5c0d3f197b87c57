"""requirements.lock agrees with pyproject.toml: every dependency pinned exactly, inside pyproject's bounds.

The lock is what `make demo` and `make test` install (as pip constraints); `make lock` regenerates it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python 3.10: pytest brings tomli
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
NOT_LOCKED = {"torch"}  # installed first from TORCH_SPEC, never resolved by pip from the lock


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [Requirement(text) for text in project["dependencies"] + project["optional-dependencies"]["test"]]
    return [requirement for requirement in requirements if canonicalize_name(requirement.name) not in NOT_LOCKED]


def _locked() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, line in enumerate((ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;=<>!~]+)", line)
        assert match, f"requirements.lock:{number}: '{line}' is not an exact pin NAME==VERSION"
        name = canonicalize_name(match[1])
        assert name not in pins, f"requirements.lock:{number}: {name} is pinned twice"
        pins[name] = Version(match[2])
    return pins


@pytest.mark.parametrize("requirement", _declared(), ids=str)
def test_every_declared_dependency_is_pinned_within_its_bounds(requirement: Requirement) -> None:
    name = canonicalize_name(requirement.name)
    if requirement.marker is not None and not requirement.marker.evaluate():
        pytest.skip(f"{requirement}: not needed on this platform")
    pins = _locked()
    assert name in pins, f"{requirement} is not pinned in requirements.lock: run `make lock`"
    assert requirement.specifier.contains(pins[name], prereleases=True), (
        f"requirements.lock pins {name}=={pins[name]}, outside pyproject's {requirement}: run `make lock`")


def test_torch_stays_out_of_the_lock_and_the_makefile_installs_with_it() -> None:
    assert not NOT_LOCKED & set(_locked()), "torch is installed from TORCH_SPEC, never pinned in the lock"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "LOCK ?= requirements.lock" in makefile
    installs = [line.strip() for line in makefile.splitlines() if "pip install" in line and "-e " in line]
    locked = [line for line in installs if "-c $(LOCK)" in line]
    assert len(locked) >= 2, f"make demo/test must install with -c $(LOCK): {installs}"

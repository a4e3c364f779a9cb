"""The lock files under requirements/ (pure logic on the project's own files): every dependency that
pyproject.toml declares is pinned there at a version it allows, so `make` installs what the project asks
for, and the bot's own packages are pinned alike for the container (runtime.lock) and for `make test`
(dev.lock). A change to pyproject.toml without `make lock` fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")


def pins(lock: str) -> dict[str, str]:
    found = {}
    for line in (ROOT / "requirements" / lock).read_text().splitlines():
        if match := PIN.match(line):
            found[canonicalize_name(match[1])] = match[2]
    return found


@pytest.mark.parametrize(
    ("lock", "declared"),
    [
        ("runtime.lock", PROJECT["dependencies"]),
        ("dev.lock", PROJECT["dependencies"] + EXTRAS["dev"]),
        ("sandbox.lock", EXTRAS["sandbox"]),
    ],
)
def test_every_declared_dependency_is_pinned_at_a_version_it_allows(lock: str, declared: list[str]) -> None:
    pinned = pins(lock)
    wrong = []
    for text in declared:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"python_version": "3.11"}):
            continue
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            wrong.append(f"{text} (locked: {version})")
    assert wrong == [], f"run `make lock`: {lock} does not satisfy pyproject.toml"


def test_the_bots_own_packages_are_pinned_alike_for_the_container_and_for_tests() -> None:
    runtime, dev = pins("runtime.lock"), pins("dev.lock")
    assert {name: dev.get(name) for name in runtime} == runtime

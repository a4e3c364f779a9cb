"""Where the sessions' memory cgroups go, and why not when they cannot (pure logic on files in tmp_path)."""

from __future__ import annotations

from pathlib import Path

from core.sandbox.cgroups import MemoryCgroups


def test_a_delegated_cgroup_v2_with_the_memory_controller_is_used(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("memory pids\n")
    found, why = MemoryCgroups.find(tmp_path)
    assert found == MemoryCgroups(tmp_path, 2)
    assert why == ""


def test_a_cgroup_v2_without_the_memory_controller_for_its_children_is_refused_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("pids\n")
    found, why = MemoryCgroups.find(tmp_path)
    assert found is None
    assert "memory controller is not enabled" in why
    assert str(tmp_path) in why


def test_a_group_the_bot_cannot_write_is_refused_with_the_reason(tmp_path: Path) -> None:
    missing = tmp_path / "not-there"
    found, why = MemoryCgroups.find(missing)
    assert found is None
    assert "not writable" in why


def test_without_a_memory_hierarchy_the_reason_is_given(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("1:cpu:/\n2:pids:/\n")  # neither a memory controller nor cgroup v2
    found, why = MemoryCgroups.find(proc_cgroup=proc)
    assert found is None
    assert why == "this machine has no memory cgroup"


def test_groups_left_by_a_bot_that_died_are_removed_and_others_kept(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("memory\n")
    (tmp_path / "cgroup.subtree_control").write_text("memory\n")
    dead = tmp_path / "threadline-sandbox-999999999-abcd"
    alive = tmp_path / "threadline-sandbox-1-abcd"  # pid 1 always exists
    other = tmp_path / "someone-else"
    for directory in (dead, alive, other):
        directory.mkdir()
    assert MemoryCgroups.find(tmp_path)[0] is not None
    assert not dead.exists()
    assert alive.exists()
    assert other.exists()

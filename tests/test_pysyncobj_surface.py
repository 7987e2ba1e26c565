"""hakv.raft.pysyncobj_surface: every pysyncobj private hakv.raft relies on exists on the
installed pysyncobj, hakv.raft relies on no other and on every one listed, and no test
names one (a version bump fails here, and in GroupMember's accessors, not in tests)."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
from pathlib import Path

import pytest
from pysyncobj import SyncObj
from pysyncobj.transport import TCPTransport

from hakv.raft import pysyncobj_surface as surface

RAFT = Path(__file__).resolve().parents[1] / "hakv" / "raft"


def test_the_installed_pysyncobj_is_the_checked_version() -> None:
    assert importlib.metadata.version("pysyncobj") == surface.CHECKED_VERSION


@pytest.mark.parametrize("name", surface.SYNCOBJ_STATE)
def test_syncobj_still_has_the_state(name: str) -> None:
    assert re.search(rf"self\.__{name}\b", inspect.getsource(SyncObj)), name


@pytest.mark.parametrize("name", surface.SYNCOBJ_CALLED + surface.SYNCOBJ_OVERRIDDEN)
def test_syncobj_still_has_the_method(name: str) -> None:
    assert callable(getattr(SyncObj, f"_SyncObj__{name}", None)), name


@pytest.mark.parametrize("module, cls, attr", surface.OTHER_PRIVATE)
def test_other_classes_still_have_the_state(module: str, cls: str, attr: str) -> None:
    source = inspect.getsource(getattr(importlib.import_module(module), cls))
    assert re.search(rf"self\.__{attr}\b", source), f"{cls}.__{attr}"


@pytest.mark.parametrize("name", surface.TRANSPORT_INTERNAL)
def test_the_transport_still_has_the_internal(name: str) -> None:
    assert name in inspect.getsource(TCPTransport), name


@pytest.mark.parametrize("module, attr", surface.MODULE_PATCHES)
def test_the_patched_module_attributes_exist(module: str, attr: str) -> None:
    assert hasattr(importlib.import_module(module), attr)


def _mangled_in(paths: list[Path]) -> set[str]:
    return {m for path in paths
            for m in re.findall(r"_[A-Z]\w*?__\w+", path.read_text(encoding="utf-8"))}


def test_hakv_raft_uses_exactly_the_listed_privates() -> None:
    used = _mangled_in([p for p in RAFT.glob("*.py") if p.name != "pysyncobj_surface.py"])
    assert used <= surface.mangled(), f"not listed: {sorted(used - surface.mangled())}"
    assert used >= surface.mangled(), f"listed, unused: {sorted(surface.mangled() - used)}"


def test_no_test_names_a_pysyncobj_private() -> None:
    """Tests go through GroupMember's accessors: a pysyncobj bump breaks those, not tests."""
    tests = [p for p in Path(__file__).parent.rglob("*.py") if p.name != Path(__file__).name]
    named = {str(p.relative_to(p.parents[1])) for p in tests if _mangled_in([p])}
    assert not named, sorted(named)


def test_the_trackers_and_settings_import_no_pysyncobj() -> None:
    for name in ("settings", "readindex", "prevote", "quiesce", "handover",
                 "pysyncobj_surface"):
        source = (RAFT / f"{name}.py").read_text(encoding="utf-8")
        top = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        assert not [line for line in top if "pysyncobj" in line], name

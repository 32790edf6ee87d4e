"""The compiled prober's build helper (upgrade_demo.prober): its cache key follows the source, and a
machine without Go gets an error that says so."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from testbed.errors import TestbedError
from upgrade_demo import prober


def test_the_cache_key_changes_with_any_go_file(tmp_path: Path) -> None:
    for name in ("go.mod", "main.go", "rawsys.go"):
        shutil.copy(prober.SOURCE / name, tmp_path / name)
    before = prober.source_key(tmp_path)
    assert prober.source_key(tmp_path) == before
    (tmp_path / "rawsys.go").write_text((tmp_path / "rawsys.go").read_text() + "\n// edit\n")
    assert prober.source_key(tmp_path) != before


def test_without_a_go_toolchain_the_error_says_so(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prober, "CACHE", tmp_path)  # nothing built there
    monkeypatch.setattr(prober.shutil, "which", lambda name: None)
    monkeypatch.setattr(prober.os, "access", lambda path, mode: False)
    with pytest.raises(TestbedError, match="no Go toolchain"):
        prober.binary()

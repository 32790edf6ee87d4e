"""``python -m chaos``: what it refuses (a job count, a second run beside one), before any
cluster starts."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

import chaos.__main__ as chaos_main
from chaos.__main__ import main


@pytest.mark.parametrize(("argv", "says"), [
    (["--mode", "kubelet", "--jobs", "2"], "kubelet mode runs on the one full testbed"),
    (["--jobs", "0"], "--jobs 0: give 1 or more"),
])
def test_a_job_count_it_cannot_run_is_refused_saying_why(
        argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert says in capsys.readouterr().err


def test_a_second_run_beside_one_under_way_is_refused_saying_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(chaos_main, "OUT", tmp_path)
    (tmp_path / "kwok").mkdir()
    with open(tmp_path / "kwok" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the run under way
        assert main(["--only", "1"]) == 2
    assert "another run of mode kwok uses" in capsys.readouterr().err

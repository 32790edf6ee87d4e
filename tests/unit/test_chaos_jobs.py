"""``python -m chaos --jobs``: what it refuses, before any cluster starts."""

from __future__ import annotations

import pytest

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

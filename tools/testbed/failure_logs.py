"""The logs a failed test is reported with: the tail of each log its fixtures attached.

A test that waits on the operator fails with the condition it waited for; why the operator
did not get there is in the operator's log (and, on the full testbed, the kubelet's), a file
that a CI run does not keep. A fixture attaches such a log with :func:`attach_log`; a conftest
that imports :func:`pytest_runtest_makereport` adds the last lines of each attached log to the
report of a test that failed, as a section printed with its failure.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.daemons import log_tail

TAIL_LINES = 80


@dataclass(frozen=True)
class AttachedLog:
    title: str
    path: Path
    keep: Callable[[str], bool] | None = None  # only the lines it keeps (a shared log)


ATTACHED = pytest.StashKey[list[AttachedLog]]()


def attach_log(request: pytest.FixtureRequest, title: str, path: Path,
               keep: Callable[[str], bool] | None = None) -> None:
    """Report the tail of ``path`` (its lines that ``keep`` keeps) if the test fails."""
    request.node.stash.setdefault(ATTACHED, []).append(AttachedLog(title, path, keep))


def tail(log: AttachedLog, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of the log that it keeps, or why there are none."""
    try:
        return log_tail(log.path, lines, log.keep) or "(no line)"
    except OSError as err:
        return f"(cannot read {log.path}: {err.strerror})"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        for log in item.stash.get(ATTACHED, []):
            report.sections.append((f"{log.title}: last {TAIL_LINES} lines of {log.path}",
                                    tail(log)))
    return report

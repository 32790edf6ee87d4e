"""testbed.failure_logs: a failed test is reported with the tail of the logs its fixtures
attached, filtered as asked; a passed one is not (pytester runs a real pytest session)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFTEST = '''
import pytest
from testbed.failure_logs import attach_log, pytest_runtest_makereport  # noqa: F401

@pytest.fixture
def op(request, tmp_path):
    log = tmp_path / "operator.log"
    log.write_text("".join(f"line {n} ns-{n % 2}\\n" for n in range(200)))
    attach_log(request, "the operator's log", log)
    attach_log(request, "odd lines", log, keep=lambda line: "ns-1" in line)
    attach_log(request, "a log never written", tmp_path / "none.log")
'''


def test_a_failed_test_is_reported_with_the_tails_of_its_logs(
        pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile("def test_fails(op):\n    assert False\n"
                        "def test_passes(op):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert out.count("last 80 lines of") == 3  # the passed test's report has none
    whole = section(out, "the operator's log", "odd lines")
    assert "line 199 ns-1" in whole and "line 120 ns-0" in whole
    assert "line 119 ns-1" not in whole
    odd = section(out, "odd lines", "a log never written")
    assert "line 41 ns-1" in odd and "line 39 ns-1" not in odd and "ns-0" not in odd
    assert "No such file or directory" in section(out, "a log never written", "short test")


def section(out: str, title: str, next_title: str) -> str:
    """The report's section ``title``: its text up to the next title."""
    start = out.index(f"{title}: last 80 lines")
    return out[start:out.index(next_title, start + len(title))]

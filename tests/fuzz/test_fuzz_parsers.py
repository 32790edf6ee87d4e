"""Every fuzz target (``fuzz_targets.TARGETS``) for the suite's fixed, derandomized budget.

A failure prints hypothesis's smallest failing input; add it to ``test_parser_regressions.py``
as an example named for what it is, and fix the parser.
"""

from __future__ import annotations

import pytest
from fuzz_targets import SUITE_EXAMPLES, TARGETS, Target
from hypothesis import given, settings


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_target(target: Target) -> None:
    @settings(max_examples=max(10, round(SUITE_EXAMPLES * target.share)))
    @given(target.strategy)
    def fuzz(example: object) -> None:
        target.check(example)

    fuzz()

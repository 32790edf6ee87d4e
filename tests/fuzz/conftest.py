"""Hypothesis profiles of the fuzz tests.

``suite`` (the default, inside ``make test``): a fixed number of examples per target,
derandomized (the same inputs on every run and machine, so CI is reproducible), no example
database and no deadline (the machine is shared: a slow example is not a failure).
``make fuzz`` does not use pytest: ``run.py`` drives the same targets for a time budget.
"""

from __future__ import annotations

from fuzz_targets import SUITE_EXAMPLES
from hypothesis import HealthCheck, settings

settings.register_profile(
    "suite", max_examples=SUITE_EXAMPLES, derandomize=True, database=None, deadline=None,
    print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.load_profile("suite")

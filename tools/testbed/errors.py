"""The one error the testbed raises: its message is the single line a CLI user sees."""


class TestbedError(Exception):
    """A step of the testbed failed; the message names the step or component."""

    __test__ = False  # not a pytest test class, whatever its name says

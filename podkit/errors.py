"""Errors that podkit reports to a person as one readable line."""


class PodkitError(Exception):
    """A problem the user can fix; its message says what to fix.

    The CLI prints ``podkit: <message>`` on stderr and exits with ``exit_code``.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

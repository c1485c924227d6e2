"""The one exception type for mistakes a user can fix (bad value, missing data, corrupt file).

The CLI catches it once, prints its message as a single line and exits with status 2. Bugs raise
anything else and keep their traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class UserError(Exception):
    """A bad input the user can act on; the message is one line and names the bad value."""


def unknown_choice(kind: str, value: object, choices: Iterable[str]) -> UserError:
    """The standard 'unknown X; choose one of: ...' error."""
    listed = ", ".join(sorted(choices))
    return UserError(f"unknown {kind} {value!r}; choose one of: {listed}")


def check_all(scope: str, problems: Mapping[str, bool]) -> None:
    """Raise one UserError listing every message whose condition holds (`{message: failed}`)."""
    bad = [message for message, failed in problems.items() if failed]
    if bad:
        raise UserError(f"{scope}: {'; '.join(bad)}")


def count_problem(label: str, value: object, minimum: int) -> str | None:
    """Why `value` is not an integer >= `minimum` (None when it is one): one wording for
    every count a config holds."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{label} must be an integer >= {minimum}, got {value!r}"
    if value < minimum:
        return f"{label} must be >= {minimum}, got {value}"
    return None


class Interrupted(Exception):
    """Work stopped by Ctrl-C (SIGINT) or SIGTERM, with what was kept; the CLI prints the
    message as one line and exits with 128 + the signal number (130 for Ctrl-C)."""

    def __init__(self, message: str, signal_number: int = 2) -> None:
        super().__init__(message)
        self.signal_number = signal_number

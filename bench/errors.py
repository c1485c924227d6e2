"""The exceptions the CLI turns into one line: `UserError`, a mistake a user can fix (bad value,
missing data, corrupt file; exit status 2), `RunFailed` (a run ended without a result; 1) and
`Interrupted` (Ctrl-C or SIGTERM; 128 + the signal). Bugs raise anything else and keep their
traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping


class UserError(Exception):
    """A bad input the user can act on; the message is one line and names the bad value."""


def unknown_choice(kind: str, value: object, choices: Iterable[str]) -> UserError:
    """The standard 'unknown X; choose one of: ...' error, with the closest choice first when
    the value looks like a typo or a wrong case (`MTDT` -> did you mean 'mtdt'?)."""
    choices = sorted(map(str, choices))
    listed = ", ".join(choices)
    return UserError(
        f"unknown {kind} {value!r}{did_you_mean(value, choices)}; choose one of: {listed}"
    )


def did_you_mean(value: object, choices: Iterable[str], prefix: str = "") -> str:
    """' (did you mean 'x'?)' for the choice closest to a mistyped or wrongly cased `value`,
    shown after `prefix` (a key's section: matched on the last part alone); '' when none is
    close."""
    if not isinstance(value, str):
        return ""
    by_lower = {choice.lower(): choice for choice in map(str, choices)}
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {prefix + by_lower[close[0]]!r}?)" if close else ""


def check_all(scope: str, problems: Mapping[str, bool], values: object = None) -> None:
    """Raise one UserError listing every message whose condition holds (`{message: failed}`),
    each naming its key as the user types it (`method.sparsity must be ...`). A message
    `<field of values> must ...` gets the value the field has (`, got 1.5`)."""
    bad = []
    for message, failed in problems.items():
        if not failed:
            continue
        field, _, rest = message.partition(" ")
        if values is not None and rest.startswith("must") and hasattr(values, field):
            message += f", got {getattr(values, field)!r}"
        bad.append(message if message.startswith(f"{scope}.") else f"{scope}.{message}")
    if bad:
        raise UserError("; ".join(bad))


def count_problem(label: str, value: object, minimum: int) -> str | None:
    """Why `value` is not an integer >= `minimum` (None when it is one): one wording for
    every count a config holds."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{label} must be an integer >= {minimum}, got {value!r}"
    if value < minimum:
        return f"{label} must be >= {minimum}, got {value}"
    return None


def leading_zero_hint(typed: object) -> str:
    """Why an integer typed with leading zeros (`seed=007`) is refused: Hydra's grammar reads it
    as text, which a user cannot guess from `must be an integer`."""
    if isinstance(typed, str) and typed.isdigit() and len(typed) > 1 and typed.startswith("0"):
        return f" (Hydra reads a number with a leading zero as text: write {int(typed)})"
    return ""


def damage_reason(error: Exception) -> str:
    """What is wrong with a file's content, in one line: `no 'key'` for a missing key (a
    KeyError's own text is only the quoted key), else the error's text on one line."""
    if isinstance(error, KeyError):
        return f"no {error}"
    return " ".join(str(error).split()) or type(error).__name__


class RunFailed(Exception):
    """A run stopped without a result (its status says why)."""


class Interrupted(Exception):
    """Work stopped by Ctrl-C (SIGINT) or SIGTERM, with what was kept; the CLI prints the
    message as one line and exits with 128 + the signal number (130 for Ctrl-C)."""

    def __init__(self, message: str, signal_number: int = 2) -> None:
        super().__init__(message)
        self.signal_number = signal_number

"""Method implementations; importing this package registers every method."""

from methods import dt, mtdt, prompt_dt  # noqa: F401

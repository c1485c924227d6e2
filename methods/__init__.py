"""Method implementations; importing this package registers every method."""

from methods import dt, harmodt, m3dt, mtbc, mtdt, mtiql, prompt_dt  # noqa: F401

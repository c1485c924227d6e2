"""Suites are the official HarmoDT task lists, mapped to Meta-World v3 names that really exist."""

from __future__ import annotations

import pytest
from metaworld.env_dict import ALL_V3_ENVIRONMENTS

from bench.errors import UserError
from bench.suites import SUITES, get_suite, v2_name, v3_name


def test_suite_sizes_and_prefixes():
    mt50, mt30, mt5 = SUITES["mt50"].tasks, SUITES["mt30"].tasks, SUITES["mt5"].tasks
    assert (len(mt50), len(set(mt50)), len(mt30), len(mt5)) == (50, 50, 30, 5)
    assert mt30 == mt50[:30] and mt5 == mt50[:5]
    assert mt5 == (
        "basketball-v3", "bin-picking-v3", "button-press-topdown-v3", "button-press-v3",
        "button-press-wall-v3",
    )  # fmt: skip
    assert mt50.index("assembly-v3") == 42  # the official order, not Meta-World's benchmark order


def test_every_task_is_a_metaworld_v3_environment():
    assert set(SUITES["mt50"].tasks) <= set(ALL_V3_ENVIRONMENTS)


def test_name_mapping_round_trips():
    assert v2_name("peg-insert-side-v3") == "peg-insert-side-v2"
    assert v3_name("peg-insert-side-v2") == "peg-insert-side-v3"


def test_unknown_suite_lists_the_choices():
    with pytest.raises(UserError, match="unknown task suite 'mt7'; choose one of: mt30, mt5, mt50"):
        get_suite("mt7")

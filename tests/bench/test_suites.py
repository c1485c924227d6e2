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
    listed = "ant_dir, cheetah_dir, cheetah_vel, mt30, mt5, mt50"
    expected = rf"unknown task suite 'mt7' \(did you mean 'mt5'\?\); choose one of: {listed}"
    with pytest.raises(UserError, match=expected):
        get_suite("mt7")


@pytest.mark.parametrize(
    "family, count, test",
    [
        ("cheetah_dir", 2, [0, 1]),
        ("cheetah_vel", 40, [2, 7, 15, 23, 26]),
        ("ant_dir", 50, [6, 17, 23, 30, 41]),
    ],
)
def test_meta_rl_suites_have_the_splits_of_table_5(family, count, test):
    suite = get_suite(family)
    assert suite.test_tasks == tuple(f"{family}-{i}" for i in test)
    train = [int(t.rsplit("-", 1)[1]) for t in suite.tasks]
    if family == "cheetah_dir":  # trains and tests on both directions
        assert train == [0, 1] and suite.unseen_tasks == ()
    else:
        assert sorted(train + test) == list(range(count)) and not set(train) & set(test)
        assert suite.unseen_tasks == suite.test_tasks
    assert suite.evaluation_tasks == suite.test_tasks
    # Seen tasks keep their training id; unseen ones are numbered after the training tasks.
    ids = [suite.task_id(t) for t in suite.evaluation_tasks]
    expected = [0, 1] if family == "cheetah_dir" else list(range(count - 5, count))
    assert ids == expected
    assert {suite.split(t) for t in suite.test_tasks} == {
        "train" if family == "cheetah_dir" else "test"
    }


def test_a_metaworld_suite_is_scored_on_its_training_tasks():
    suite = get_suite("mt5")
    assert suite.evaluation_tasks == suite.tasks and suite.data_tasks == suite.tasks

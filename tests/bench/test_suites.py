"""Suites are the official HarmoDT task lists, mapped to Meta-World v3 names that really exist."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from metaworld.env_dict import ALL_V3_ENVIRONMENTS

from bench.data.locations import dataset_path
from bench.errors import UserError
from bench.evaluate import EvalProtocol
from bench.suites import BENCHMARKS, SUITES, benchmark_of, get_suite, v3_name

BENCH = Path(__file__).resolve().parents[2] / "bench"


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


def test_a_v2_name_maps_to_its_v3_environment():
    assert v3_name("peg-insert-side-v2") == "peg-insert-side-v3"
    assert v3_name("peg-insert-side-v3") == "peg-insert-side-v3"


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


def test_only_the_suite_module_names_the_meta_rl_benchmark():
    """One object knows a suite's benchmark: nothing else in bench/ branches on meta-RL."""
    pattern = re.compile(r"META_RL|meta_rl")
    naming = sorted(
        str(path.relative_to(BENCH.parent))
        for path in BENCH.rglob("*.py")
        if pattern.search(path.read_text())
    )
    assert naming == ["bench/suites.py"]


@pytest.mark.parametrize("name", sorted(SUITES))
def test_each_suite_benchmark_answers_consistently(name):
    suite = SUITES[name]
    benchmark = suite.benchmark
    assert benchmark in BENCHMARKS and benchmark_of(name) is benchmark
    assert pickle.loads(pickle.dumps(suite)) == suite  # a Slurm job's copy is the same suite
    data = {"root": "/data", "episodes_per_task": 7, "generator": "replay"}
    protocol = EvalProtocol(episodes=2, goal_pool_seed=1, goal_selection_seed=0,
                            max_steps=benchmark.episode_steps, benchmark=benchmark)  # fmt: skip
    returns, success = np.array([1.0, 3.0]), np.array([True, False])
    scores = benchmark.episode_scores(suite.evaluation_tasks[0], protocol, returns, success)
    description = benchmark.describe(protocol)
    if name.startswith("mt"):  # Meta-World: success rate on the training tasks
        assert (benchmark.scored_by, benchmark.unseen_task_table) == ("success", False)
        assert not benchmark.trains_experts and not suite.test_tasks
        assert benchmark.episode_steps == 500 and "success" in description
        assert scores["success_rate"] == 0.5 and "goal_indices" in scores
        assert dataset_path(data, suite) == Path("/data/replay-ep7")
    else:  # meta-RL families: return on the test tasks, Table 4, data from SAC experts
        assert (benchmark.scored_by, benchmark.unseen_task_table) == ("return", True)
        assert benchmark.trains_experts and suite.test_tasks
        assert benchmark.episode_steps == 200 and "success" not in description
        assert scores == {"success_rate": None, "episode_return": [1.0, 3.0]}
        assert dataset_path(data, suite) == Path("/data/sac-ep7")
    assert set(benchmark.store_keys) <= {"root", "generator", "episodes_per_task", "seed",
                                          "goal_pool_seed", "expert_steps"}  # fmt: skip
    line = benchmark.evaluation_line(1234)
    assert line.startswith("evaluation") and "1234 episodes per" in line


def test_a_name_that_is_no_suite_reads_as_the_default_benchmark():
    assert benchmark_of("mt7") is SUITES["mt5"].benchmark

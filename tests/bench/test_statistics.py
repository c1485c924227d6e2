import numpy as np
import pytest

from bench import statistics


@pytest.fixture
def matrices():
    rng = np.random.default_rng(3)
    return {name: rng.uniform(size=(3, 5)) for name in ("harmodt_f", "mtdt", "prompt_dt")}


def test_a_methods_intervals_do_not_move_when_another_method_joins(matrices):
    alone = {"harmodt_f": matrices["harmodt_f"], "mtdt": matrices["mtdt"]}
    together = statistics.interval_estimates(matrices).set_index("method")
    apart = statistics.interval_estimates(alone).set_index("method")
    assert together.loc[["harmodt_f", "mtdt"]].equals(apart)

    improvement = statistics.probability_of_improvement(matrices, "harmodt_f").set_index("method")
    improvement_alone = statistics.probability_of_improvement(alone, "harmodt_f")
    assert improvement.loc[["mtdt"]].equals(improvement_alone.set_index("method"))

    thresholds = np.linspace(0, 1, 5)
    _, bands = statistics.performance_profiles(matrices, thresholds, reps=200)
    _, bands_alone = statistics.performance_profiles(alone, thresholds, reps=200)
    np.testing.assert_array_equal(bands["mtdt"], bands_alone["mtdt"])


def test_the_intervals_bracket_the_point_and_differ_between_methods(matrices):
    table = statistics.interval_estimates(matrices)
    assert (table["iqm_low"] <= table["iqm"]).all() and (table["iqm"] <= table["iqm_high"]).all()
    assert (table["mean_low"] < table["mean_high"]).all()
    assert table["mean_low"].nunique() == len(matrices)


def test_the_intervals_do_not_depend_on_numpys_global_state(matrices):
    np.random.seed(1)
    first = statistics.interval_estimates(matrices)
    np.random.seed(2)
    assert statistics.interval_estimates(matrices).equals(first)

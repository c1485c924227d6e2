import numpy as np
import pytest
from rliable import metrics
from scipy.stats import t as student

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


def test_the_detectable_difference_is_found_as_often_as_the_power_says():
    from scipy.stats import ttest_ind

    rng = np.random.default_rng(0)
    difference = statistics.detectable_difference(std=1.0, seeds=3, alpha=0.05, power=0.8)
    a = rng.normal(0.0, 1.0, (20_000, 3))
    b = rng.normal(difference, 1.0, (20_000, 3))
    found = (ttest_ind(a, b, axis=1).pvalue < 0.05).mean()
    assert found == pytest.approx(0.8, abs=0.01)
    assert statistics.detectable_difference(1.0, 5) < difference  # more seeds, finer


def test_episode_noise_is_the_spread_finite_episodes_give_a_runs_mean():
    rng = np.random.default_rng(1)
    rates = np.array([[0.0, 0.1, 0.5, 0.9, 1.0]])
    runs = rng.binomial(50, rates, size=(20_000, 5)) / 50  # many evaluations of one policy
    assert statistics.episode_noise(rates, 50) == pytest.approx(runs.mean(axis=1).std(), rel=0.03)


def test_the_seed_spread_is_pooled_within_methods_and_needs_two_runs():
    matrices = {
        "a": np.array([[0.1, 0.3], [0.3, 0.5]]),  # run means 0.2, 0.4: squares 0.02, 1 dof
        "b": np.array([[0.9, 0.9], [0.5, 0.5], [0.7, 0.7]]),  # 0.9, 0.5, 0.7: 0.08, 2 dof
        "c": np.array([[0.5, 0.5]]),  # one run: no spread of its own
    }
    std, dof = statistics.pooled_seed_std(matrices)
    assert dof == 3 and std == pytest.approx(np.sqrt(0.10 / 3))
    assert statistics.pooled_seed_std({"c": matrices["c"]}) is None


def test_a_label_with_commas_keeps_its_name_in_the_probability_of_improvement(matrices):
    named = {"harmodt_f": matrices["harmodt_f"], "harmodt_f [a=1,b=2]": matrices["mtdt"]}
    table = statistics.probability_of_improvement(named, "harmodt_f", reps=50)
    assert list(table["method"]) == ["harmodt_f [a=1,b=2]"]


def test_pairwise_welch_is_the_t_test_on_run_means_with_unequal_variances():
    a = np.array([[0.2, 0.4], [0.3, 0.5], [0.1, 0.3]])  # run means 0.3, 0.4, 0.2
    b = np.array([[0.6, 0.8], [0.9, 0.9]])  # run means 0.7, 0.9
    one = np.array([[0.5, 0.5]])
    table = statistics.pairwise_welch({"a": a, "b": b, "one": one}).set_index(["first", "second"])
    x, y = a.mean(axis=1), b.mean(axis=1)
    # Welch by hand: t on the separate variances, Welch-Satterthwaite degrees of freedom.
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    t = (x.mean() - y.mean()) / np.sqrt(vx + vy)
    dof = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    assert table.loc[("a", "b"), "difference"] == pytest.approx(-0.5)
    assert table.loc[("a", "b"), "p_value"] == pytest.approx(2 * student.sf(abs(t), dof))
    assert table.loc[("b", "a"), "p_value"] == pytest.approx(table.loc[("a", "b"), "p_value"])
    assert np.isnan(table.loc[("a", "one"), "p_value"])  # one run has no spread to test
    assert len(table) == 6


def test_the_improvement_probability_is_rliables_own_definition():
    draws = np.random.default_rng(3)
    for runs_x, runs_y in [(3, 3), (2, 5), (1, 4)]:
        x = draws.integers(0, 6, size=(runs_x, 30)) / 5  # coarse: many ties
        y = draws.integers(0, 6, size=(runs_y, 30)) / 5
        if runs_x == runs_y:
            y[:, :4] = x[:, :4]  # equal columns: 0.5 by rliable's rule
        expected = metrics.probability_of_improvement(x, y)
        assert statistics.improvement_probability(x, y) == pytest.approx(expected, abs=1e-12)

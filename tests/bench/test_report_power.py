"""The report's smallest-detectable-difference paragraph and its corrections for testing every
pair."""

import numpy as np

from bench.report_power import corrections_note, detectability_note
from bench.statistics import pairwise_welch


def test_it_is_stated_from_the_seed_spread_with_the_episodes_share_beside_it():
    matrices = {
        "harmodt_f": np.array([[0.5, 0.7], [0.6, 0.8], [0.4, 0.6]]),
        "mtdt": np.array([[0.2, 0.4], [0.3, 0.3], [0.1, 0.5]]),
    }
    text = detectability_note(matrices, 50)
    # run means 0.6, 0.7, 0.5 and 0.3, 0.3, 0.3: squares 0.02 + 0, 4 dof -> std 7.1 points
    assert "deviation of 7.1 points from seed to seed (pooled within methods, 4 degrees" in text
    assert "with 3 seeds per method" in text and "21.7 points 80% of the time" in text
    assert "50 episodes per task alone" in text and "of the seed-to-seed variance" in text


def test_a_method_with_a_single_run_is_named_and_left_out_of_it():
    matrices = {
        "harmodt_f": np.array([[0.5, 0.7], [0.6, 0.8], [0.4, 0.6]]),
        "mtdt": np.array([[0.2, 0.4], [0.3, 0.3], [0.1, 0.5]]),
        "m3dt": np.array([[0.9, 0.9]]),  # one run: its seeds would be 1, stating nothing
    }
    text = detectability_note(matrices, 50)
    assert "7.1 points from seed to seed (pooled within methods, 4 degrees" in text
    assert "with 3 seeds per method" in text and "21.7 points 80% of the time" in text
    assert "Left out of it, as no test tells a single run from another method's runs: m3dt." in (
        text
    )
    two_singles = detectability_note({**matrices, "mtbc": np.array([[0.1, 0.1]])}, 50)
    assert "another method's runs: m3dt, mtbc." in two_singles
    # The episodes' spread is that of the runs it is set beside: 4.4 with m3dt's run at 90 %.
    assert "about 4.6 points (binomial" in text


def test_one_method_with_runs_to_spare_is_not_enough():
    matrices = {"harmodt_f": np.array([[0.5, 0.7], [0.6, 0.8]]), "mtdt": np.array([[0.2, 0.4]])}
    text = detectability_note(matrices, 50)
    assert text.startswith("Smallest detectable difference: not stated, as only harmodt_f has two")


def test_a_single_run_of_every_method_leaves_it_unstated():
    matrices = {"harmodt_f": np.array([[0.5, 0.7]]), "mtdt": np.array([[0.2, 0.4]])}
    text = detectability_note(matrices, 50)
    assert text.startswith("Smallest detectable difference: not stated, as every method has a")
    alone = detectability_note({"mtdt": np.array([[0.2, 0.4]])}, 50)
    assert alone.startswith("Smallest detectable difference: not stated, as every method has a")
    assert "about" in text and "points (binomial" in text


def test_runs_that_score_alike_leave_it_unstated_rather_than_zero():
    same = np.array([[0.5, 0.7], [0.5, 0.7]])
    text = detectability_note({"harmodt_f": same, "mtdt": same / 2}, 50)
    assert text.startswith("Smallest detectable difference: not stated, as each method's runs")


def test_runs_at_zero_success_still_state_what_the_episodes_could_spread():
    zeros = np.zeros((2, 5))
    text = detectability_note({"mtbc": zeros, "mtdt": zeros}, 2)
    # at rate 0 the binomial spread vanishes; at 50 %: sqrt(0.25 / (2 x 5)) = 15.8 points
    assert "about 0.0 points (binomial, at the observed rates; 15.8 were every task at 50 %)" in (
        text
    )


def test_the_corrections_name_the_pairs_that_survive_testing_every_pair():
    matrices = {
        "strong": np.array([[0.9, 0.9], [0.93, 0.93], [0.91, 0.91]]),
        "weak": np.array([[0.5, 0.5], [0.62, 0.62], [0.55, 0.55]]),
        "base": np.array([[0.4, 0.4], [0.45, 0.45], [0.42, 0.42]]),
        "twin": np.array([[0.41, 0.41], [0.44, 0.44], [0.43, 0.43]]),
    }
    text = corrections_note(pairwise_welch(matrices))
    # Welch p: strong over the others 0.000003-0.007, weak over base 0.046 (over twin 0.057)
    assert text is not None and "all 6 pairs: of the 4 below p = 0.05" in text
    kept = "keeps 3 (strong > weak; strong > base; strong > twin)"
    assert f"Holm's method (family-wise error 5%) {kept}" in text
    assert f"Benjamini-Hochberg (false discovery rate 5%) {kept}" in text
    assert "weak > base" not in text  # p = 0.046 alone, not once 6 pairs are tested


def test_no_correction_is_stated_where_no_pair_differs():
    first = np.array([[0.4, 0.4], [0.5, 0.5], [0.45, 0.45]])
    second = np.array([[0.42, 0.42], [0.47, 0.47], [0.44, 0.44]])
    assert corrections_note(pairwise_welch({"a": first, "b": second})) is None

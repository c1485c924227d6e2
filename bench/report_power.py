"""The smallest difference a cohort's runs can show: a report's answer to "could these seeds and
episodes have told the methods apart?" (Colas et al. 2018, "How Many Random Seeds?").

The spread that matters is seed to seed: a run's mean success over tasks moves from one training
seed to the next. It is pooled within methods (each method's runs about their own mean), so every
method's runs count towards it, and a two-sample t-test with the seeds a method has then needs a
true difference of `detectable_difference` to find it 80 % of the time. Part of that spread is
the evaluation's own: finite episodes per task (binomial), stated beside it.

Beside the differences table's uncorrected p-values, the pairs that survive testing every pair.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bench import statistics

ALPHA, POWER = 0.05, 0.8


def detectability_note(matrices: Mapping[str, np.ndarray], episodes_per_task: int) -> str:
    """One paragraph for a cohort's (runs x tasks) success matrices, in points (%)."""
    # Only a method with two runs or more has a seed-to-seed spread, and a test needs two such
    # methods: a method with a single run is named, not counted.
    tested = {name: runs for name, runs in matrices.items() if len(runs) >= 2}
    single = [name for name in matrices if name not in tested]
    scores = np.concatenate(list((tested or matrices).values()), axis=0)
    noise = 100 * statistics.episode_noise(scores, episodes_per_task)
    # Rates near 0 or 1 have almost no binomial spread: give the 50 % bound beside it, so a
    # smoke cohort at 0 % does not read as a noiseless evaluation.
    bound = 50 / np.sqrt(episodes_per_task * scores.shape[1])
    evaluation = (
        f"Evaluation with {episodes_per_task} episodes per task alone gives a run's mean success "
        f"a standard deviation of about {noise:.1f} points (binomial, at the observed rates; "
        f"{bound:.1f} were every task at 50 %)"
    )
    pooled = statistics.pooled_seed_std(tested)
    if pooled is None or len(tested) < 2:
        why = "every method has a single run"
        if tested:
            why = f"only {next(iter(tested))} has two runs or more"
        return (
            f"Smallest detectable difference: not stated, as {why}; it "
            "needs the seed-to-seed spread of two runs or more of each of two methods at least "
            f"(3 seeds or more recommended). {evaluation}."
        )
    left_out = (
        " Left out of it, as no test tells a single run from another method's runs: "
        f"{', '.join(single)}."
        if single
        else ""
    )
    std, dof = pooled
    if std == 0:
        return (
            "Smallest detectable difference: not stated, as each method's runs scored alike "
            f"(no seed-to-seed spread to scale it by).{left_out} {evaluation}."
        )
    seeds = min(len(runs) for runs in tested.values())
    difference = 100 * statistics.detectable_difference(std, seeds, ALPHA, POWER)
    share = min(1.0, (noise / (100 * std)) ** 2)
    return (
        f"Smallest detectable difference: a run's mean success has a standard deviation of "
        f"{100 * std:.1f} points from seed to seed (pooled within methods, {dof} degrees of "
        f"freedom); with {seeds} seeds per method a two-sided t-test at level {ALPHA} ({seeds} "
        f"runs against {seeds}, {2 * seeds - 2} degrees of freedom) finds a "
        f"true difference of {difference:.1f} points {POWER:.0%} of the time (Colas et al. "
        f"2018).{left_out} {evaluation}, about {share:.0%} of the seed-to-seed variance."
    )


def differences_table(matrices: Mapping[str, np.ndarray], pairs: pd.DataFrame) -> pd.DataFrame:
    """Row minus column, in points of mean success, with Welch's p-value over the runs: the
    run-level comparison that the per-task bootstrap intervals are not (they resample runs
    within each task, as if a run's tasks were independent). `pairs`: the matrices'
    `statistics.pairwise_welch`."""
    names = list(matrices)
    table = pd.DataFrame("", index=names, columns=names)
    for pair in pairs.itertuples():
        if np.isnan(pair.p_value):
            runs = min(len(matrices[pair.first]), len(matrices[pair.second]))
            p_value = "one run" if runs < 2 else "no spread"
        else:
            p_value = p_text(pair.p_value)
        table.loc[pair.first, pair.second] = f"{100 * pair.difference:+.1f} ({p_value})"
    return table


def p_text(p_value: float) -> str:
    """Two significant digits (`p=0.051`, `p=0.0017`), so that a p-value just above a level
    does not print as the level itself, nor a small one as 0."""
    return "p<0.001" if p_value < 0.001 else f"p={p_value:#.2g}"


def corrections_note(pairs: pd.DataFrame) -> str | None:
    """Which of the differences table's `pairs` (`statistics.pairwise_welch`) with p < ALPHA
    survive a correction for testing every pair: Holm's (family-wise error) and
    Benjamini-Hochberg's (false discovery rate), both at ALPHA. None where no pair is below
    ALPHA before correction."""
    from statsmodels.stats.multitest import multipletests

    # pairwise_welch gives each pair in both orders, one after the other: one of each, named
    # with its higher method first.
    pairs = pairs.iloc[::2].dropna(subset=["p_value"])
    below = pairs["p_value"] < ALPHA
    if not below.any():
        return None
    names = [
        f"{pair.first} > {pair.second}" if pair.difference >= 0 else f"{pair.second} > {pair.first}"
        for pair in pairs.itertuples()
    ]

    def kept(method: str) -> str:
        keep = multipletests(pairs["p_value"], alpha=ALPHA, method=method)[0]
        chosen = [name for name, keep_it in zip(names, keep, strict=True) if keep_it]
        return f"{len(chosen)}" + (f" ({'; '.join(chosen)})" if chosen else "")

    return (
        f"Corrected for testing all {len(pairs)} pairs: of the {int(below.sum())} below "
        f"p = {ALPHA}, Holm's method (family-wise error {ALPHA:.0%}) keeps {kept('holm')}, and "
        f"Benjamini-Hochberg (false discovery rate {ALPHA:.0%}) keeps {kept('fdr_bh')}. A "
        "set of comparisons named before the runs were made is corrected among itself only."
    )

"""`bench analyze conflicts`: HarmoDT's Fig. 2a as a command.

    bench analyze conflicts tasks=mt5,mt30 scale=quick train.steps=2000 --out reports/conflicts.md

The paper's claim: the averaged harmony score (Def. 3.2) of Prompt-DT's task gradients falls as
the suite grows, and random task masks raise it. For each suite (and seed) of the overrides this
trains Prompt-DT without masks, and HarmoDT-R (a fixed random mask per task: Prompt-DT's
network under masks, never updated) at each sparsity, with analysis.harmony_every=N, as
ordinary run directories (resumable; done ones are skipped). The figure and the table are
read from their metrics.jsonl, so the same command after an interruption finishes the job.

Def. 3.2 alone cannot test that claim: unrelated gradients score more for fewer tasks and more
under masks. Each score is therefore shown beside its chance level (`harmony_chance` in
methods/dt.py) and the excess over it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bench import plots, results
from bench.atomic import atomic_file
from bench.config import compose_run, expand_sweep, parse_overrides
from bench.errors import UserError
from bench.output_paths import check_output_file
from bench.plots import NO_MASK
from bench.suites import suite_size

DEFAULT_SPARSITIES = (0.1, 0.2, 0.3, 0.4, 0.5)
POINTS = 20  # harmony measurements per run when analysis.harmony_every is not given
KEYS = ["suite", "setting"]  # a row of the table, a line of the figure


def conflict_jobs(overrides: Sequence[str], sparsities: Sequence[float]) -> list[list[str]]:
    """The runs behind the figure: per expanded job of `overrides`, Prompt-DT and HarmoDT-R at
    each sparsity, all measuring harmony at the same steps."""
    keys = {override.key_or_group for override in parse_overrides(overrides)}
    if "method" in keys or any(key.startswith("method.") for key in keys):
        raise UserError("analyze conflicts trains prompt_dt and harmodt_r itself: drop method=")
    bad = [s for s in sparsities if not 0.0 < s < 1.0]
    if bad or not sparsities:
        raise UserError(f"--sparsities must be numbers in (0, 1), got {list(sparsities)}")
    jobs = []
    for job in expand_sweep(overrides):
        if "analysis.harmony_every" not in keys:
            steps = int(compose_run(job).config["train"]["steps"])
            job = [*job, f"analysis.harmony_every={max(1, steps // POINTS)}"]
        jobs.append([*job, "method=prompt_dt"])
        jobs += [[*job, "method=harmodt_r", f"method.sparsity={s:g}"] for s in sparsities]
    return jobs


def harmony_frame(run_dirs: Sequence[Path]) -> pd.DataFrame:
    """A row per harmony measurement: suite, setting, seed, step, harmony, harmony_chance."""
    import yaml

    rows = []
    for run_dir in run_dirs:
        config = yaml.safe_load((run_dir / results.CONFIG).read_text())["config"]
        method = config["method"]
        setting = (
            NO_MASK
            if method["name"] == "prompt_dt"
            else f"random masks, sparsity {method['sparsity']:g}"
        )
        for event in results.read_metrics(run_dir):
            if event.get("event") == "harmony":
                # No chance level in runs logged before it existed: NaN.
                chance = event.get("harmony_chance", math.nan)
                rows.append({"suite": config["tasks"]["name"], "setting": setting,
                             "seed": config["seed"], "step": event["step"],
                             "harmony": event["harmony"], "harmony_chance": chance})  # fmt: skip
    return pd.DataFrame(rows, columns=[*KEYS, "seed", "step", "harmony", "harmony_chance"])


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A row per suite and setting: the harmony averaged over training and at the last
    measurement (means over seeds), each with its chance level and the excess over it."""
    last_step = frame.groupby([*KEYS, "seed"])["step"].transform("max")
    overall = _with_chance(frame, "mean over training", "chance", "excess")
    last = _with_chance(frame[frame["step"] == last_step], "last", "last chance", "last excess")
    seeds = frame.groupby(KEYS)["seed"].nunique().rename("seeds")
    table = pd.concat([overall, last, seeds], axis=1).reset_index()
    order = {name: index for index, name in enumerate(settings_in_order(frame))}
    table["_suite"] = table["suite"].map(suite_size)
    table["_setting"] = table["setting"].map(order)
    return table.sort_values(["_suite", "_setting"]).drop(columns=["_suite", "_setting"])


def _with_chance(frame: pd.DataFrame, value: str, chance: str, excess: str) -> pd.DataFrame:
    """Per suite and setting, the mean harmony, its mean chance level and the difference, as
    columns named `value`, `chance`, `excess` (NaN where a run logged no chance level)."""
    means = plots.harmony_means(frame, KEYS)
    return pd.DataFrame(
        {
            value: means["harmony"],
            chance: means["harmony_chance"],
            excess: means["harmony"] - means["harmony_chance"],
        }
    )


def analyze_conflicts(
    overrides: Sequence[str], sparsities: Sequence[float], out: Path | None
) -> str:
    """Run (or resume) the runs, then the table as markdown; with `out`, also the figure and
    the commands beside it."""
    from bench.launch import check_jobs, run_locally

    if out is not None:  # before the runs: a path that cannot be written fails now, not after
        check_output_file(out, "--out", (".md",))
    jobs = check_jobs(conflict_jobs(overrides, sparsities))
    if run_locally(jobs) != 0:
        raise UserError("some conflict runs failed (listed above); fix them and run it again")
    frame = harmony_frame([settings.run_dir for _, settings in jobs])
    table = summary_table(frame).to_markdown(index=False, floatfmt=".4f")
    settings = jobs[0][1]
    title = f"scale={settings.scale}, {settings.train.steps} steps"
    lines = [table]
    if out is not None:
        figure = plots.conflict_curves(
            frame, settings_in_order(frame), out.with_suffix(".png"), f"Gradient harmony ({title})"
        )
        commands = "\n".join(f"bench run {' '.join(job)}" for job, _ in jobs)
        lines = [
            f"# Gradient conflicts (HarmoDT Fig. 2a), {title}", "",
            "Averaged harmony score (Def. 3.2, in [-1, 1]; 1 = every task's gradient agrees in "
            "sign with the mean gradient on every weight) of one batch per task at the training "
            "weights, for Prompt-DT without masks and HarmoDT-R's fixed random task masks.", "",
            "Def. 3.2 is above 0 even for unrelated tasks (each task is part of the mean it is "
            "compared with), and zeros (masks) raise it further. *chance* is its value for the "
            "same gradients with every entry's sign flipped by a coin (same magnitudes and "
            "zeros, no shared direction); *excess* = score - chance is the agreement among "
            "tasks beyond chance.", "",
            table, "", f"![harmony over training]({figure.name})", "",
            "Made by:", "", "    bench analyze conflicts " + " ".join(
                [*overrides, f"--sparsities={','.join(f'{s:g}' for s in sparsities)}",
                 f"--out={out}"]), "",
            "which ran:", "", *[f"    {line}" for line in commands.splitlines()],
        ]  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(out, "w") as handle:
            handle.write("\n".join(lines) + "\n")
    return "\n".join(lines)


def settings_in_order(frame: pd.DataFrame) -> list[str]:
    masked = sorted(s for s in frame["setting"].unique() if s != NO_MASK)
    return [NO_MASK, *masked] if NO_MASK in set(frame["setting"]) else masked

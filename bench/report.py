"""`bench report`: the paper's tables from run results, with honest statistics and provenance.

Everything comes from one DataFrame (bench.result_table: a row per run and task). Runs of
different scale presets, dataset stores or evaluation protocols form separate cohorts and are
never averaged together; within a cohort a cell is one configuration (method, variant, suite,
data) averaged over its seeds, and a cell with fewer seeds than the most complete one says so.
The tables report the final checkpoint; the paper's own numbers appear only in rows labelled
"HarmoDT paper, Table N (their data, ...)".
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench import (
    report_best_of,
    report_figures,
    report_partial,
    report_provenance,
    report_reference,
    report_unseen,
    statistics,
)
from bench import report_render as render
from bench.errors import UserError, unknown_choice
from bench.output_paths import check_output_file, check_output_folder
from bench.report_figures import cell_label
from bench.report_power import corrections_note, detectability_note, differences_table
from bench.result_table import COHORT, load_results, unfinished_runs
from bench.suites import SUITES

FORMATS = ("md", "latex", "csv", "json")
SUFFIXES = {"md": ".md", "latex": ".tex", "csv": ".csv", "json": ".json"}  # of --out's file
DATA_ORDER = ("near_optimal", "sub_optimal")
TABLE4_SUITES = tuple(name for name, suite in SUITES.items() if suite.benchmark.unseen_task_table)
SUITE_ORDER = ("mt5", "mt30", "mt50", *TABLE4_SUITES)
INTERVALS_NOTE = (
    "The intervals resample runs within each task (rliable's stratified bootstrap), as if a "
    "run's tasks were independent: with few runs they are narrower than the spread of a run's "
    "mean from seed to seed. The differences table below compares whole runs."
)
REFERENCE_METHOD = "harmodt_f"  # probability of improvement is of HarmoDT-F over each other one
IMPROVEMENT_NOTE = (
    "Per task, the share of (run, run) pairs in which {method} scores higher, ties counting a "
    "half, averaged over tasks (rliable's probability of improvement): a task that every run of "
    "both methods fails, or solves, counts 0.5, so many such tasks pull it towards 0.5 whatever "
    "the gap in mean success. Its intervals resample as the aggregates' do."
)
SMOKE = "smoke"
NO_INTERVAL = "(1 run: no interval)"
SMOKE_BANNER = (
    "**scale=smoke: a check that everything runs end to end (50 steps, 2 episodes per task). "
    "These scores mean nothing; nothing is bold.**"
)


@dataclass(frozen=True)
class _Output:
    fmt: str
    assets: Path | None  # where plots and commands.sh go (None: nowhere)
    base: Path | None  # links are relative to it (the report's folder)
    reps: int  # bootstrap resamples
    pending: pd.DataFrame  # run folders without a result (result_table.unfinished_runs)


def write_report(
    root: Path, out: Path | None, fmt: str = "md", reps: int = 2000, strict: bool = False
) -> str:
    """The report of every result below `root`; with `out`, also written there (plots and
    commands.sh in the folder `out` without its suffix). Returns the text.

    A result.json that cannot be read is named on stderr and in a "not included" section, and
    the rest is reported; with `strict` it is an error instead."""
    if fmt not in FORMATS:
        raise unknown_choice("report format", fmt, FORMATS)
    _check_output(out, fmt, reps)
    unreadable: list[str] = []
    frame = load_results(root, None if strict else unreadable)
    pending = unfinished_runs(root, set(frame["run_dir"]))
    for problem in unreadable:
        print(f"warning: not included: {problem}", file=sys.stderr)
    if fmt in ("csv", "json"):
        text = (
            frame.to_csv(index=False) if fmt == "csv" else frame.to_json(orient="records", indent=1)
        )
    else:
        assets = out.with_suffix("") if out is not None else None
        output = _Output(fmt, assets, out.parent if out is not None else None, reps, pending)
        text, partial = _document(frame, output)
        if strict and partial:
            raise UserError(f"partial cells (--strict): {'; '.join(partial)}")
        if unreadable:
            heading = render.heading(fmt, 2, "Not included")
            text += f"\n{heading}\n\n{_not_included(fmt, unreadable)}"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return text


def _check_output(out: Path | None, fmt: str, reps: int) -> None:
    """Refuse what would fail after the work: no resamples, or an --out that cannot be written
    (the report file, and for md/latex its plots' folder beside it)."""
    if reps < 1:
        raise UserError(f"--bootstrap-reps must be >= 1, got {reps}")
    if out is None:
        return
    check_output_file(out, "--out", (SUFFIXES[fmt],))
    if fmt in ("md", "latex"):
        check_output_folder(out.with_suffix(""), "--out's plot folder")


def _not_included(fmt: str, unreadable: list[str]) -> str:
    if fmt != "md":
        return "".join(f"% {problem}\n" for problem in unreadable)
    listed = "\n".join(f"- {problem}" for problem in unreadable)
    return f"These results could not be read (`--strict` makes this an error):\n\n{listed}\n"


def comparison_table(run_dirs: Sequence[Path]) -> str | None:
    """The Table 1 style comparison of the given runs (the end of `bench run -m`), or None."""
    frames = []
    for run_dir in run_dirs:
        if (Path(run_dir) / "result.json").exists():
            frames.append(load_results(Path(run_dir)))
    if not frames:
        return None
    frame = pd.concat(frames, ignore_index=True)
    parts = []
    for _, cohort in frame.groupby(COHORT, sort=True):
        for suite, runs in cohort.groupby("suite", sort=False):
            table = (
                report_unseen.unseen_task_table(runs.assign(label=runs.apply(cell_label, axis=1)))
                if report_unseen.is_unseen_task_suite(str(suite))
                else _suite_table(runs, bold=runs["scale"].iloc[0] != SMOKE)
            )
            caption = f"{suite}, scale={runs['scale'].iloc[0]}, success rate (%)"
            if report_unseen.scored_by_return(str(suite)):
                caption = f"{suite}, scale={runs['scale'].iloc[0]}, mean return"
            parts.append(render.table(table, "md", caption))
    return "\n\n".join(parts)


# The document ------------------------------------------------------------------------------------


def _document(frame: pd.DataFrame, output: _Output) -> tuple[str, list[str]]:
    """The report's text, and a line per cell whose seeds are not all finished."""
    fmt, assets, base = output.fmt, output.assets, output.base
    cohorts = list(frame.groupby(COHORT, sort=True))
    sections, warnings, partial = [], [], []
    if len(cohorts) > 1:
        warnings.append(
            f"{len(cohorts)} groups of runs differ in scale preset, evaluation episodes or dataset "
            "store; each has its own section and they are never averaged together."
        )
    for number, ((scale, episodes, store), cohort) in enumerate(cohorts, start=1):
        name = f"{scale}-ep{episodes}-{str(store)[:8]}" if len(cohorts) > 1 else str(scale)
        heading = (
            f"scale={scale}, {episodes} evaluation episodes per task, data store {str(store)[:12]}"
        )
        pending = output.pending
        pending = pending[(pending["scale"] == scale) & (pending["eval_episodes"] == episodes)]
        stores = {path for path in cohort["store"] if isinstance(path, str)}
        if stores:  # a run on another store is another cohort's (older results name none)
            pending = pending[pending["store"].isna() | pending["store"].isin(stores)]
        body, cohort_warnings, cohort_partial = _cohort(cohort, output, name, pending)
        warnings += [f"{heading}: {w}" for w in cohort_warnings]
        partial += cohort_partial
        if scale == SMOKE:
            body = render.note(fmt, SMOKE_BANNER) + "\n\n" + body
        sections.append(render.heading(fmt, 2, f"{number}. {heading}") + "\n\n" + body)
    if assets is not None:
        assets.mkdir(parents=True, exist_ok=True)
        (assets / "commands.sh").write_text(report_provenance.commands(frame))
    top = [render.heading(fmt, 1, "mtbench report")]
    top += [render.note(fmt, f"**Warning:** {w}") for w in warnings]
    top.append(
        render.note(
            fmt,
            "Scores are success rates (%) of the final checkpoint (meta-RL families: mean "
            "episode returns), mean ± std over seeds; `n=k` marks a cell with fewer seeds than "
            "the most complete one."
            + (
                " Columns labelled `best of N evaluations` are the official code's protocol: "
                "each run's highest mean over its N evaluations (periodic and final), an "
                "upward-biased choice, shown apart and never mixed into a final score; the "
                "paper's rows sit there."
                if bool((frame["best_evaluations"] > 1).any())
                else " The paper's rows, where shown, made by its official code's best-of "
                "protocol, sit in columns of their own, never beside a final score."
            ),
        )
    )
    if assets is not None:
        top.append(
            render.note(
                fmt,
                f"Every run's command: [{assets.name}/commands.sh]"
                f"({render.link(assets / 'commands.sh', base)}).",
            )
        )
    return "\n\n".join([*top, *sections]) + "\n", partial


def _cohort(
    cohort: pd.DataFrame, output: _Output, name: str, pending: pd.DataFrame
) -> tuple[str, list[str], list[str]]:
    """The cohort's section, its warnings, and its partial cells (`report_partial`)."""
    fmt = output.fmt
    parts, warnings, partial = [], [], []
    for suite in render.ordered(cohort["suite"].unique(), SUITE_ORDER):
        runs = cohort[cohort["suite"] == suite]
        suite_pending = pending[pending["suite"] == suite]
        accounts = report_partial.seed_accounts(_runs(runs), _labelled(suite_pending))
        partial += [f"{label} on {suite} {data}: {text}" for (label, data), text in
                    accounts.items()]  # fmt: skip
        warnings += _missing_seed_warnings(runs, accounts)
        if report_unseen.is_unseen_task_suite(suite):
            labelled = runs.assign(label=runs.apply(cell_label, axis=1))
            table = report_unseen.unseen_task_table(labelled)
            label = report_reference.PAPER_LABEL.format(table="Table 4")
            reference = report_unseen.paper_rows(suite, label, list(table.columns))
            caption = (
                f"Table 4 style: {suite}, mean return, final checkpoint; HarmoDT paper rows: "
                "Table 4"
            )
            parts.append(render.table(table, fmt, caption, reference))
            continue
        table = _suite_table(runs, accounts, bold=runs["scale"].iloc[0] != SMOKE)
        shape = _model_shape(runs)
        reference = report_reference.paper_rows(suite, DATA_ORDER, shape)
        best_of = report_best_of.label(runs)
        if reference is not None:
            # The paper's numbers come from the official code, which reports the best
            # evaluation: they sit in the best-of columns, never beside a final score.
            protocol = best_of or report_best_of.PAPER_PROTOCOL
            columns = {data: report_best_of.column(data, protocol) for data in DATA_ORDER}
            reference = reference.rename(columns=columns)
            if not best_of:  # runs without periodic evaluations: a column of their own
                table = report_best_of.with_paper_columns(table, columns)
        source = report_reference.paper_source(suite, shape)
        checkpoint = f"final checkpoint and {best_of}" if best_of else "final checkpoint"
        caption = f"Table 1 style: {suite}, {checkpoint}" + (
            f"; HarmoDT paper rows from its {source}" if source else ""
        )
        parts.append(render.table(table, fmt, caption, reference))
        fewer = report_best_of.fewer_evaluations(_runs(runs))
        if fewer:
            parts.append(render.note(fmt, fewer))
    returns = cohort["suite"].map(report_unseen.scored_by_return)
    by_return, cohort = cohort[returns], cohort[~returns]  # success-rate statistics below
    suites = [s for s in SUITE_ORDER if s in set(cohort["suite"])]
    if len(suites) > 1:
        parts.append(render.table(_suites_table(cohort), fmt, "Table 2 style: suites side by side"))
    sizes = _sizes_table(cohort) if not cohort.empty else None
    if sizes is not None:
        parts.append(
            render.table(sizes, fmt, "Table 3 style: model sizes (layers, heads, parameters)")
        )
    for (suite, data), runs in cohort.groupby(["suite", "data"], sort=True):
        unfinished = pending[(pending["suite"] == suite) & (pending["data"] == data)]
        parts.append(_aggregates(runs, output, f"{name}-{suite}-{data}", unfinished))
    parts.append(report_provenance.provenance(pd.concat([cohort, by_return]), fmt))
    return "\n\n".join(parts), warnings, partial


# Tables ------------------------------------------------------------------------------------------


def _runs(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its cell, seed and mean success rate over tasks."""
    return _labelled(frame.drop_duplicates("run_dir"))


def _labelled(runs: pd.DataFrame) -> pd.DataFrame:
    return runs.assign(label=runs.apply(cell_label, axis=1) if len(runs) else pd.Series(dtype=str))


def _cells(runs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Mean, std and seed count of the per-run success rate (%) per label and `columns`."""
    grouped = runs.groupby(["label", *columns])["run_success_rate"]
    cells = grouped.agg(mean="mean", std="std", n="count").reset_index()
    cells["mean"] *= 100
    cells["std"] = cells["std"].fillna(0.0) * 100
    return cells


def _pivot(
    cells: pd.DataFrame,
    columns: list[str],
    accounts: Mapping[tuple[str, str], str] | None = None,
    bold: bool = True,
) -> pd.DataFrame:
    """label x columns of 'mean ± std', the best per column in bold, `n=k` when incomplete,
    or the cell's seed account (`n=2 of 3: seed 2 interrupted at step N`) where runs of it are
    unfinished (`accounts`, keyed by label and data)."""
    full = int(cells["n"].max())
    best = cells.groupby(columns)["mean"].transform("max")
    accounts = accounts or {}

    def seeds(cell: pd.Series) -> str:
        account = accounts.get((cell["label"], cell.get("data")))
        if account is not None:
            return f" ({account})"
        if cell["n"] < full:
            return f" (n={int(cell['n'])})"
        return " (1 seed)" if cell["n"] == 1 else ""

    def score(cell: pd.Series) -> str:  # one seed has no spread to show: no "± 0.00"
        text = f"{cell['mean']:.2f}" + (f" ± {cell['std']:.2f}" if cell["n"] > 1 else "")
        return f"**{text}**" if bold and cell["mean"] == best[cell.name] else text

    text = cells.apply(lambda cell: score(cell) + seeds(cell), axis=1)
    table = cells.assign(text=text).pivot_table(
        index="label", columns=columns, values="text", aggfunc="first"
    )
    table.columns = [
        " ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in table.columns
    ]
    return table.fillna("—")


def _suite_table(
    frame: pd.DataFrame, accounts: Mapping[tuple[str, str], str] | None = None, bold: bool = True
) -> pd.DataFrame:
    """Final-checkpoint cells per data; where runs evaluated periodically, each data column is
    followed by its best-of-N cells, labelled and computed apart (bold is per column)."""
    runs = _runs(frame)
    table = _pivot(_cells(runs, ["data"]), ["data"], accounts, bold)
    ordered = [d for d in DATA_ORDER if d in table.columns] + [
        d for d in table.columns if d not in DATA_ORDER
    ]
    params = runs.groupby("label")["num_parameters"].first() / 1e6
    best_of = report_best_of.label(runs)
    if best_of:
        periodic = runs[runs["best_evaluations"] > 1]
        best = _pivot(
            _cells(periodic.assign(run_success_rate=periodic["best_success_rate"]), ["data"]),
            ["data"],
            accounts,
            bold,
        ).rename(columns=lambda c: report_best_of.column(c, best_of))
        table = table.rename(columns=lambda c: f"{c}, final").join(best)
        ordered = [
            column
            for data in ordered
            for column in (f"{data}, final", report_best_of.column(data, best_of))
            if column in table.columns
        ]
    return table[ordered].fillna("—").assign(params=params.map("{:.2f} M".format))


def _suites_table(frame: pd.DataFrame) -> pd.DataFrame:
    return _pivot(_cells(_runs(frame), ["suite", "data"]), ["suite", "data"])


def _model_shape(runs: pd.DataFrame) -> tuple[int, int] | None:
    """The (layers, heads) every transformer run of `runs` shares, if they share one."""
    shapes = runs[["n_layer", "n_head"]].dropna().drop_duplicates()
    if len(shapes) != 1:
        return None
    layers, heads = shapes.iloc[0]
    return int(layers), int(heads)


def _sizes_table(frame: pd.DataFrame) -> pd.DataFrame | None:
    runs = _runs(frame).dropna(subset=["n_layer", "n_head"])
    sizes_per_method = runs.groupby("method")[["n_layer", "n_head"]].nunique()
    if runs.empty or int(sizes_per_method.to_numpy().max()) < 2:
        return None
    runs = runs.assign(
        label=runs["method"],
        size=runs.apply(
            lambda r: f"({int(r['n_layer'])}, {int(r['n_head'])}, {r['num_parameters'] / 1e6:.2f})",
            axis=1,
        ),
    )
    return _pivot(_cells(runs, ["suite", "data", "size"]), ["suite", "data", "size"]).T


def _per_task(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.assign(label=frame.apply(cell_label, axis=1))
    return frame.pivot_table(index="label", columns="task", values="success_rate", aggfunc="mean")


def _missing_seed_warnings(
    frame: pd.DataFrame, accounts: Mapping[tuple[str, str], str]
) -> list[str]:
    runs = _runs(frame)
    expected = set(runs["seed"])
    suite = frame["suite"].iloc[0]
    warnings = [
        f"{label} on {suite} {data} is partial: {account}"
        for (label, data), account in accounts.items()
    ]
    for (label, data), cell in runs.groupby(["label", "data"]):
        if (label, data) in accounts:
            continue
        missing = sorted(expected - set(cell["seed"]))
        if missing:
            warnings.append(
                f"{label} on {frame['suite'].iloc[0]} {data} lacks seed(s) "
                f"{', '.join(map(str, missing))}: its cell averages {len(cell)} seed(s)"
            )
    return warnings


# Aggregates and plots -----------------------------------------------------------------------------


def _aggregates(frame: pd.DataFrame, output: _Output, name: str, unfinished: pd.DataFrame) -> str:
    fmt, reps = output.fmt, output.reps
    suite, data, scale = frame["suite"].iloc[0], frame["data"].iloc[0], frame["scale"].iloc[0]
    labelled = frame.assign(label=frame.apply(cell_label, axis=1))
    matrices = statistics.score_matrices(labelled, by="label")
    estimates = statistics.interval_estimates(matrices, reps=reps)
    rows = list(estimates.itertuples())
    table = pd.DataFrame(
        {
            "runs x tasks": [
                f"{len(matrices[m])} x {matrices[m].shape[1]}" for m in estimates["method"]
            ],
            "IQM (95% CI)": [_ci(r.iqm, r.iqm_low, r.iqm_high, r.runs) for r in rows],
            "mean (95% CI)": [_ci(r.mean, r.mean_low, r.mean_high, r.runs) for r in rows],
        },
        index=estimates["method"],
    )
    parts = [
        render.table(table, fmt, f"Aggregates: {suite} {data} (stratified bootstrap over seeds)"),
        render.note(fmt, INTERVALS_NOTE),
        render.note(fmt, detectability_note(matrices, int(frame["eval_episodes"].iloc[0]))),
    ]
    if REFERENCE_METHOD in matrices and len(matrices) > 1:
        improvement = statistics.probability_of_improvement(matrices, REFERENCE_METHOD, reps=reps)
        improvement = improvement.set_index("method")
        shown = pd.DataFrame(
            {
                f"P({REFERENCE_METHOD} > method) (95% CI)": [
                    f"{r.probability:.2f} [{r.low:.2f}, {r.high:.2f}]"
                    if min(len(matrices[REFERENCE_METHOD]), len(matrices[str(r.Index)])) > 1
                    else f"{r.probability:.2f} {NO_INTERVAL}"
                    for r in improvement.itertuples()
                ]
            },
            index=improvement.index,
        )
        parts.append(render.table(shown, fmt, f"Probability of improvement: {suite} {data}"))
        parts.append(render.note(fmt, IMPROVEMENT_NOTE.format(method=REFERENCE_METHOD)))
    if len(matrices) > 1:
        caption = (
            f"Differences: {suite} {data}, row minus column in points of mean success, with "
            "Welch's t-test over runs (p uncorrected for multiple comparisons)"
        )
        pairs = statistics.pairwise_welch(matrices)
        parts.append(render.table(differences_table(matrices, pairs), fmt, caption))
        if corrected := corrections_note(pairs):
            parts.append(render.note(fmt, corrected))
    per_task = _per_task(frame)
    details = render.table(
        per_task.map(lambda v: f"{100 * v:.0f}"),
        fmt,
        f"Per task: {suite} {data}, success rate (%), mean over seeds",
    )
    summary = f"<summary>Per-task success rates ({suite} {data})</summary>"
    parts.append(f"<details>{summary}\n\n{details}\n\n</details>" if fmt == "md" else details)
    if output.assets is not None and fmt == "md":
        title = f"{suite} {data}, scale={scale}"
        made = report_figures.figures(
            frame, matrices, per_task, output.assets, output.reps, name, title, unfinished
        )
        parts.append("\n\n".join(f"![{p.stem}]({render.link(p, output.base)})" for p in made))
    return "\n\n".join(parts)


def _ci(point: float, low: float, high: float, runs: int) -> str:
    if runs < 2:  # resampling one run gives it back: an interval of zero width says nothing
        return f"{100 * point:.2f} {NO_INTERVAL}"
    return f"{100 * point:.2f} [{100 * low:.2f}, {100 * high:.2f}]"

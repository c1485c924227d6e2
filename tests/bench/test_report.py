"""`bench report`: every number of its tables and aggregates, checked against numbers computed
here independently, on a runs folder of one real smoke run plus hand-written results."""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from bench.cli import main
from bench.report import write_report
from bench.report_figures import evaluation_curves
from bench.result_table import load_results

REPS = 200  # bootstrap resamples: enough to bracket the point estimates, and fast
TASKS = ["task-a", "task-b", "task-c", "task-d"]
# (method, seed) -> per-task success rates; harmodt_f lacks seed 2 on purpose.
SCORES = {
    ("mtdt", 0): [0.2, 0.4, 0.0, 1.0],
    ("mtdt", 1): [0.4, 0.4, 0.2, 0.8],
    ("mtdt", 2): [0.0, 0.6, 0.2, 1.0],
    ("harmodt_f", 0): [0.6, 0.8, 0.2, 1.0],
    ("harmodt_f", 1): [0.8, 0.6, 0.4, 1.0],
}


@pytest.fixture(scope="module")
def real_run(smoke_data_root, tmp_path_factory) -> Path:
    """A real smoke run's directory (its result.json is the format the others copy)."""
    runs = tmp_path_factory.mktemp("real")
    args = ["run", "method=mtdt", "tasks=mt5", "scale=smoke", "progress=false"]
    assert main([*args, f"data.root={smoke_data_root}", f"run.root={runs}"]) == 0
    return next(runs.rglob("result.json")).parent


@pytest.fixture(scope="module")
def template(real_run) -> dict:
    return json.loads((real_run / "result.json").read_text())


def _write(root: Path, template: dict, method: str, seed: int, rates: list[float], **changes):
    result = copy.deepcopy(template)
    scale = changes.get("scale", "quick")
    run_dir = root / scale / "mt5" / "near_optimal" / method / f"seed{seed}"
    result.update(method=method, seed=seed, suite="mt5", scale=scale, run_dir=str(run_dir))
    result["per_task"] = {
        task: {"success_rate": rate, "mean_return": 100 * rate}
        for task, rate in zip(TASKS, rates, strict=True)
    }
    result["success_rate"] = float(np.mean(rates))
    result["dataset_store"] = {"path": "data/x", "hash": changes.get("store", "s" * 64)}
    result["non_default"] = changes.get("non_default", {})
    if "best" in changes:  # (evaluations, best mean success rate)
        evaluations, best = changes["best"]
        result["best_of_evaluations"] = {
            **result["best_of_evaluations"],
            "evaluations": evaluations,
            "success_rate": best,
        }
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_text(json.dumps(result))
    if "method_config" in changes:  # the values the run ran with, as its config.yaml saves them
        saved = {"config": {"method": {"name": method, **changes["method_config"]}}}
        (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))


@pytest.fixture(scope="module")
def runs(template, real_run, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(real_run, root / "real" / "smoke-mt5")
    for (method, seed), rates in SCORES.items():
        _write(root, template, method, seed, rates)
    # The real run is another preset, "elsewhere" another store: each must be its own section.
    _write(root / "elsewhere", template, "mtdt", 5, [0.0] * 4, store="t" * 64)
    return root


def _section(text: str, number: int) -> str:
    """Section `number` of the report (1: quick + store s, 2: quick + store t, 3: smoke)."""
    return text.split("\n## ")[number]


def _cell(method: str) -> str:
    means = [np.mean(r) * 100 for (m, _), r in SCORES.items() if m == method]
    return f"{np.mean(means):.2f} ± {np.std(means, ddof=1):.2f}"


def test_table_1_cells_are_the_mean_and_std_over_seeds(runs, tmp_path):
    text = write_report(runs, tmp_path / "report.md", reps=REPS)
    quick = _section(text, 1)
    harmodt_row = next(line for line in quick.splitlines() if line.startswith("| harmodt_f "))
    mtdt_row = next(line for line in quick.splitlines() if line.startswith("| mtdt "))
    assert f"**{_cell('harmodt_f')}** (n=2)" in harmodt_row  # best in bold; one seed short
    assert _cell("mtdt") in mtdt_row and "**" not in mtdt_row and "(n=" not in mtdt_row
    heading = text.split("## ")[0]  # warnings come before the first section
    assert "harmodt_f on mt5 near_optimal lacks seed(s) 2" in heading
    assert "harmodt_f — HarmoDT paper, Table 2 (their data, their scale)" in quick  # labelled
    # No run evaluated during training, yet the paper's best-of numbers get a column apart.
    table = quick.split("**Table 1 style")[1].split("\n\n")[1]
    header = table.splitlines()[0]
    assert "near_optimal, final" in header and "near_optimal, the paper's protocol" in header
    paper = next(line for line in table.splitlines() if "HarmoDT paper, Table 2" in line)
    assert paper.split("|")[2].strip() == "—" and paper.split("|")[3].strip() != "—"
    assert mtdt_row.split("|")[3].strip() == "—"


def test_presets_and_stores_are_separate_sections(runs, template):
    text = write_report(runs, None, reps=REPS)
    assert text.count("\n## ") == 3 and "3 groups of runs differ" in text
    smoke = _section(text, 3)
    assert smoke.startswith("3. scale=smoke")
    real = f"| {100 * template['success_rate']:.2f} (1 seed) "  # smoke bolds nothing
    assert real in next(line for line in smoke.splitlines() if line.startswith("| mtdt "))
    assert "These scores mean nothing" in smoke and "**Table" in smoke
    elsewhere = _section(text, 2)
    assert "**0.00** (1 seed)" in elsewhere and "(n=" not in elsewhere


def test_iqm_and_mean_match_an_independent_computation(runs):
    text = write_report(runs, None, reps=REPS)
    quick = _section(text, 1)
    aggregates = quick.split("Aggregates")[1]
    for method in ("mtdt", "harmodt_f"):
        scores = np.array([r for (m, _), r in SCORES.items() if m == method]).ravel()
        row = next(line for line in aggregates.splitlines() if line.startswith(f"| {method} "))
        iqm = stats.trim_mean(scores, 0.25) * 100
        assert f"{iqm:.2f} [" in row and f"{scores.mean() * 100:.2f} [" in row
        low, high = (float(x) for x in row.split("|")[3].split("[")[1].rstrip("] ").split(","))
        assert low <= iqm <= high
    # P(harmodt_f > mtdt): per task, the Mann-Whitney fraction of (x, y) pairs with x > y.
    x = np.array([SCORES["harmodt_f", s] for s in (0, 1)])
    y = np.array([SCORES["mtdt", s] for s in (0, 1, 2)])
    pairs = (x[:, None, :] > y[None, :, :]) + 0.5 * (x[:, None, :] == y[None, :, :])
    per_task = pairs.mean(axis=(0, 1))
    per_task[[np.array_equal(x[:, t], y[:, t]) for t in range(4)]] = 0.5
    assert f"| mtdt | {per_task.mean():.2f} [" in quick.replace("  ", " ").replace("  ", " ")
    # Differences: run means, row minus column, Welch's t-test (scipy's, on the run means).
    differences = quick.split("**Differences")[1].split("\n\n")[1]
    row = next(line for line in differences.splitlines() if line.startswith("| harmodt_f "))
    means = {
        m: [np.mean(SCORES[m, s]) for s in (0, 1, 2) if (m, s) in SCORES]
        for m in ("harmodt_f", "mtdt")
    }
    welch = stats.ttest_ind(means["harmodt_f"], means["mtdt"], equal_var=False).pvalue
    gap = 100 * (np.mean(means["harmodt_f"]) - np.mean(means["mtdt"]))
    assert f"{gap:+.1f} (p={welch:#.2g})" in row


def test_plots_and_commands_are_written_beside_the_report(runs, tmp_path):
    out = tmp_path / "reports" / "mt5.md"
    text = write_report(runs, out, reps=REPS)
    assets = tmp_path / "reports" / "mt5"
    pngs = sorted(p.name for p in assets.glob("*.png"))
    assert any("per-task" in p for p in pngs) and any("profile" in p for p in pngs)
    for png in pngs:
        assert f"(mt5/{png})" in text
    commands = (assets / "commands.sh").read_text()
    assert "bench run method=mtdt tasks=mt5 scale=smoke" in commands  # the real run's command


def test_a_resumed_run_is_traced_to_every_commit_that_made_it(real_run, tmp_path):
    run_dir = tmp_path / "runs" / "resumed"
    shutil.copytree(real_run, run_dir)
    start = yaml.safe_load((run_dir / "config.yaml").read_text())["git"]
    resume = {"event": "resume", "step": 1, "git": {"commit": "a" * 40, "dirty": False}}
    with (run_dir / "metrics.jsonl").open("a") as metrics:
        metrics.write(json.dumps(resume) + "\n")
    result = json.loads((run_dir / "result.json").read_text())
    result["git"] = {"commit": "b" * 40, "dirty": True}
    (run_dir / "result.json").write_text(json.dumps(result))
    text = write_report(tmp_path / "runs", tmp_path / "r.md", reps=REPS)
    made = f"{start['commit'][:12]}{' (dirty tree)' * bool(start['dirty'])}"
    made += f", {'a' * 12}, {'b' * 12} (dirty tree)"
    assert f"# {run_dir}, made at {made}\n" in (tmp_path / "r" / "commands.sh").read_text()
    commits = next(line for line in text.splitlines() if line.startswith("- code commits"))
    assert all(name in commits for name in made.split(", "))


def test_data_info_names_the_store_by_the_hashes_its_runs_record(template, capsys):
    store = Path(template["dataset_store"]["path"])
    assert main(["data", "info", str(store)]) == 0
    hashes = capsys.readouterr().out.splitlines()[-1]
    assert f"store hash {template['dataset_store']['hash'][:12]} " in hashes
    assert f"mt5 {template['dataset_hash'][:12]}" in hashes


def test_csv_and_latex_formats(runs, capsys):
    assert main(["report", str(runs), "--bootstrap-reps", "100", "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(frame) == 4 * (len(SCORES) + 1) + 5  # a row per run and task
    assert set(frame["scale"]) == {"quick", "smoke"}
    assert main(["report", str(runs), "--bootstrap-reps", "100", "--format", "latex"]) == 0
    latex = capsys.readouterr().out
    assert "\\begin{tabular}" in latex and "\\textbf{" in latex and "$\\pm$" in latex
    assert main(["report", str(runs), "--bootstrap-reps", "100", "--format", "html"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bootstrap-reps", "0"], "--bootstrap-reps must be >= 1, got 0"),
        (["--out", "{tmp}"], "is a folder; name the file to write"),
        (["--out", "{tmp}/report.xml"], "the file name must end in .md"),
        (["--out", "{tmp}/r.tex", "--format", "csv"], "the file name must end in .csv"),
        (["--out", "{tmp}/afile/report.md"], "afile is a file, not a folder"),
        (["--out", "{tmp}/afile.md"], "--out's plot folder {tmp}/afile is a file"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_the_work(
    runs, tmp_path, capsys, args, message
):
    (tmp_path / "afile").write_text("")
    before = sorted(tmp_path.rglob("*"))
    filled = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    assert main(["report", str(runs), *filled]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert message.replace("{tmp}", str(tmp_path)) in error
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even plots


def test_fig4_ablations_plot_success_against_each_swept_value(template, tmp_path):
    from bench.report_ablations import ablation_points

    root = tmp_path / "runs"
    for seed in (0, 1):
        # The default runs ran under an older preset (S = 0.25; today's quick says 0.2), and
        # their eta_max was resolved inside the run (null): no value to sit at.
        _write(root, template, "harmodt_f", seed, [0.5] * 4,
               method_config={"sparsity": 0.25, "eta_max": None})  # fmt: skip
        _write(root, template, "mtdt", seed, [0.25] * 4)
        for value, rate in ((0.1, 0.75), (0.4, 0.0)):
            _write(root / f"s{value}", template, "harmodt_f", seed, [rate] * 4,
                   non_default={"method.sparsity": value})  # fmt: skip
        _write(root / "eta50", template, "harmodt_f", seed, [0.5] * 4,
               non_default={"method.eta_max": 50})  # fmt: skip
    out = tmp_path / "reports" / "ablations.md"
    text = write_report(root, out, reps=REPS)
    png = next((tmp_path / "reports" / "ablations").glob("*-ablations.png"))
    assert f"(ablations/{png.name})" in text and png.read_bytes().startswith(b"\x89PNG")

    from bench.report import _runs
    from bench.result_table import load_results

    points = ablation_points(_runs(load_results(root)))
    assert list(points) == ["sparsity"]  # eta_max: one swept value, defaults without one
    by_value = points["sparsity"].groupby("value")["run_success_rate"].mean()
    assert by_value.to_dict() == {0.1: 0.75, 0.25: 0.5, 0.4: 0.0}  # the runs' own S


def test_best_of_n_evaluations_sits_beside_the_final_score_never_in_it(template, tmp_path):
    root = tmp_path / "runs"
    best = {("mtdt", 0): 0.7, ("mtdt", 1): 0.9, ("harmodt_f", 0): 0.8, ("harmodt_f", 1): 1.0}
    for (method, seed), rate in best.items():
        evaluations = 4 if (method, seed) == ("mtdt", 1) else 5  # one lost to an interruption
        _write(root, template, method, seed, SCORES[method, seed], best=(evaluations, rate))
    text = write_report(root, None, reps=REPS)
    table = text.split("**Table 1 style")[1].split("\n\n")[1]
    header = table.splitlines()[0]
    assert "near_optimal, final" in header and "near_optimal, best of 4 to 5 evaluations" in header
    assert "\n\nBest of fewer than 5 evaluations: mtdt seed 1 (4).\n\n" in text
    for method in ("mtdt", "harmodt_f"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {method} "))
        final_cell, best_cell = (cell.strip() for cell in row.split("|")[2:4])
        finals = [100 * np.mean(SCORES[method, seed]) for seed in (0, 1)]
        bests = [100 * best[method, seed] for seed in (0, 1)]
        assert f"{np.mean(finals):.2f} ± {np.std(finals, ddof=1):.2f}" in final_cell
        assert f"{np.mean(bests):.2f} ± {np.std(bests, ddof=1):.2f}" in best_cell
    # The paper's numbers (the official code's best-of protocol) sit in the best-of column.
    paper = next(line for line in table.splitlines() if "HarmoDT paper, Table" in line)
    assert paper.split("|")[2].strip() == "—" and paper.split("|")[3].strip() != "—"
    assert "final checkpoint and best of 4 to 5 evaluations" in text


def test_an_unreadable_result_is_named_and_the_rest_reported(template, tmp_path, capsys):
    root = tmp_path / "runs"
    for seed in (0, 1):
        _write(root, template, "mtdt", seed, SCORES["mtdt", seed])
    truncated = root / "quick" / "mt5" / "near_optimal" / "mtdt" / "seed1" / "result.json"
    truncated.write_text(truncated.read_text()[:200])
    foreign = root / "other" / "result.json"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("{}")
    (root / "quick" / "mt5" / "near_optimal" / "mtdt" / "seed0" / "config.yaml").write_text(": [")
    assert main(["report", str(root), "--bootstrap-reps", "100"]) == 0
    captured = capsys.readouterr()
    assert f"not included: {truncated}: cannot read it" in captured.err
    assert f"not included: {foreign}: not a run's result (no 'method')" in captured.err
    assert "## Not included" in captured.out and str(truncated) in captured.out
    seed0 = f"**{100 * np.mean(SCORES['mtdt', 0]):.2f}** (1 seed)"
    assert seed0 in captured.out  # the readable run, reported alone
    assert "| mtdt | 1 x 4          | 30.00 (1 run: no interval) |" in captured.out
    assert main(["report", str(root), "--strict"]) == 2
    assert str(foreign) in capsys.readouterr().err  # the first one found stops it


def test_an_interrupted_seed_is_named_beside_its_cell_and_its_curve_drawn(
    template, tmp_path, capsys
):
    root = tmp_path / "runs"
    for seed in (0, 1):
        _write(root, template, "mtdt", seed, SCORES["mtdt", seed])
        _write(root, template, "harmodt_f", seed, SCORES["harmodt_f", seed])
    interrupted = root / "quick" / "mt5" / "near_optimal" / "mtdt" / "seed2"
    interrupted.mkdir(parents=True)
    config = {"method": {"name": "mtdt"}, "tasks": {"name": "mt5"}, "scale": {"name": "quick"},
              "data": {"name": "near_optimal"}, "seed": 2,
              "eval": {"episodes": template["protocol"]["episodes_per_task"]}}  # fmt: skip
    (interrupted / "config.yaml").write_text(yaml.safe_dump({"config": config, "non_default": {}}))
    (interrupted / "status").write_text("interrupted at step 400\n")
    evaluations = [{"event": "eval", "step": step, "success_rate": rate, "mean_return": 0.0,
                    "per_task": {}} for step, rate in ((200, 0.1), (400, 0.3))]  # fmt: skip
    (interrupted / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evaluations))

    out = tmp_path / "reports" / "partial.md"
    text = write_report(root, out, reps=REPS)
    table = text.split("**Table 1 style")[1].split("\n\n")[1]
    mtdt_row = next(line for line in table.splitlines() if line.startswith("| mtdt "))
    assert "(n=2 of 3: seed 2 interrupted at step 400)" in mtdt_row
    assert "(n=" not in next(line for line in table.splitlines() if line.startswith("| harmodt_f "))
    heading = text.split("## ")[0]
    partial = "mtdt on mt5 near_optimal is partial: n=2 of 3: seed 2 interrupted at step 400"
    assert partial in heading
    assert next((tmp_path / "reports" / "partial").glob("*-curves.png")).stat().st_size > 0
    assert main(["report", str(root), "--bootstrap-reps", "100", "--strict"]) == 2
    assert "partial cells (--strict): mtdt on mt5 near_optimal: n=2 of 3" in capsys.readouterr().err


def _interrupted(root: Path, template: dict, seed: int, data: dict) -> None:
    """An interrupted mtdt run of `seed` whose config reads the store `data` names."""
    run_dir = root / "quick" / "mt5" / "near_optimal" / "mtdt" / f"seed{seed}"
    run_dir.mkdir(parents=True)
    config = {"method": {"name": "mtdt"}, "tasks": {"name": "mt5"}, "scale": {"name": "quick"},
              "data": {"name": "near_optimal", **data}, "seed": seed,
              "eval": {"episodes": template["protocol"]["episodes_per_task"]}}  # fmt: skip
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"config": config, "non_default": {}}))
    (run_dir / "status").write_text("interrupted at step 400\n")


def test_an_unfinished_run_on_another_store_is_not_counted_in_this_cohort(template, tmp_path):
    root = tmp_path / "runs"
    for seed in (0, 1):  # finished, on the store data/x (`_write`)
        _write(root, template, "mtdt", seed, SCORES["mtdt", seed])
    _interrupted(root, template, 2, {"path": "data/other"})  # the same cell on another store
    _interrupted(root, template, 3, {"path": "data/x"})

    text = write_report(root, None, reps=REPS)

    table = text.split("**Table 1 style")[1].split("\n\n")[1]
    mtdt_row = next(line for line in table.splitlines() if line.startswith("| mtdt "))
    assert "(n=2 of 3: seed 3 interrupted at step 400)" in mtdt_row


def test_a_result_older_than_its_store_record_is_read_with_its_data_path(template, tmp_path):
    root = tmp_path / "runs"
    _write(root, template, "mtdt", 0, SCORES["mtdt", 0])
    path = next(root.rglob("result.json"))
    result = json.loads(path.read_text())
    del result["dataset_store"]  # results made before it existed
    path.write_text(json.dumps(result))

    frame = load_results(root)

    assert set(frame["store"]) == {template["data"]["path"]}

def test_harmony_is_drawn_per_cell_and_the_diagnostic_apart_from_mask_updates(template, tmp_path):
    root = tmp_path / "runs"
    for variant, non_default in (("default", {}), ("sparsity=0.3", {"method.sparsity": 0.3})):
        _write(root / variant, template, "harmodt_f", 0, SCORES["harmodt_f", 0],
               non_default=non_default)  # fmt: skip
        run_dir = next((root / variant).rglob("result.json")).parent
        events = [
            {"event": "mask_update", "step": 100, "harmony": {"masked": 0.3, "unmasked": 0.2}},
            {"event": "harmony", "step": 100, "harmony": 0.4, "harmony_chance": 0.1},
        ]
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))

    _, harmony = evaluation_curves(load_results(root), pd.DataFrame())

    lines = set(zip(harmony["label"], harmony["series"], strict=True))
    for label in ("harmodt_f", "harmodt_f [sparsity=0.3]"):
        assert {(label, "masked"), (label, "unmasked"), (label, "training gradients")} <= lines
    assert len(lines) == 6


REPO = Path(__file__).resolve().parents[2]
COMMITTED_REPORTS = sorted(
    path.relative_to(REPO)
    for path in (REPO / "reports").glob("*.md")
    if (path.with_suffix("") / "runs").is_dir() and path.read_text().startswith("# mtbench report")
)  # reports/conflicts-quick.md is `bench analyze conflicts`' (tests/bench/test_conflicts.py)


@pytest.mark.parametrize("report", COMMITTED_REPORTS, ids=str)
def test_a_committed_report_recomputes_from_its_committed_runs(report, tmp_path, monkeypatch):
    """Every number of reports/<name>.md, and every command of its commands.sh, is what
    `bench report reports/<name>/runs` makes today from the committed result files."""
    monkeypatch.chdir(REPO)  # the report names its runs by the path it was given
    out = tmp_path / report

    text = write_report(report.with_suffix("") / "runs", out)

    assert text == report.read_text()
    commands = Path(report.with_suffix("")) / "commands.sh"
    assert (out.with_suffix("") / "commands.sh").read_text() == commands.read_text()


def test_the_mt30_notes_runs_table_recomputes_from_the_committed_runs():
    script = REPO / "reports" / "mt30-small" / "runs_table.py"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr

"""The runs table of reports/mt30-small-notes.md ("The runs so far"), from the committed files.

Each finished run below reports/mt30-small/runs: its final success (result.json), the best of
its evaluations and the step it came from (result.json's best_of_evaluations), every
evaluation (metrics.jsonl's eval events) and every commit that trained it (config.yaml's at
the start, each resume's, result.json's at the end). With --check, exit 1 unless every row is
in the notes as printed (tests/bench/test_report.py runs it).

    PYTHONPATH=. python reports/mt30-small/runs_table.py [--check]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from bench import results
from bench.result_table import run_commits
from bench.run_result import read_result

HERE = Path(__file__).parent
NOTES = HERE.parent / "mt30-small-notes.md"
EVALUATION_STEPS = (20_000, 40_000, 60_000, 80_000, 100_000)
# Row order and names as the notes write them; the folder below near_optimal/ is the key.
LABELS = {
    "harmodt_f": "HarmoDT-F",
    "harmodt_r": "HarmoDT-R",
    "mtdt": "MTDT",
    "mtdt/conditioning=none": "MTDT without task input",
    "prompt_dt": "Prompt-DT",
    "mtbc": "MTBC",
    "m3dt": "M3DT",
}
HEADER = (
    "| run | final | best of N (step) | evaluations at 20k, 40k, 60k, 80k, 100k "
    "| commits (start, resumes, end) |\n|---|---|---|---|---|"
)


def _percent(rate: float) -> str:
    return f"{100 * rate:.1f}"


def _commits(run_dir: Path) -> str:
    """The commits that trained the run, as the report's provenance names them (7 digits)."""
    saved = yaml.safe_load((run_dir / results.CONFIG).read_text())
    return run_commits(run_dir, saved, read_result(run_dir), digits=7)


def row(run_dir: Path, label: str) -> str:
    """One finished run's line of the table."""
    result = json.loads((run_dir / results.RESULT).read_text())
    evaluations = {
        e["step"]: e["success_rate"]
        for e in results.read_metrics(run_dir)
        if e.get("event") == "eval"
    }
    best = result["best_of_evaluations"]
    best_cell = (
        f"{_percent(best['success_rate'])} of {best['evaluations']} ({best['step'] // 1000}k)"
    )
    curve = ", ".join(
        _percent(evaluations[step]) if step in evaluations else "—" for step in EVALUATION_STEPS
    )
    seed = result["seed"]
    return (
        f"| {label} seed {seed} | {_percent(result['success_rate'])} | {best_cell} | {curve} "
        f"| {_commits(run_dir)} |"
    )


def table(runs: Path = HERE / "runs" / "mt30" / "near_optimal") -> str:
    lines = [HEADER]
    for folder, label in LABELS.items():
        for run_dir in sorted((runs / folder).glob("seed*")):
            if (run_dir / results.RESULT).exists():
                lines.append(row(run_dir, label))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = table()
    if "--check" not in argv:
        print(text)
        return 0
    notes = NOTES.read_text().splitlines()
    missing = [line for line in text.splitlines() if line not in notes]
    for line in missing:
        print(f"not in {NOTES.name}: {line}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

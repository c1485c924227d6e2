"""Under each report section: where its numbers come from (presets, seeds, protocol, versions,
data, commits), and the `bench run` command behind every run (commands.sh)."""

from __future__ import annotations

import pandas as pd

from bench.suites import BENCHMARKS, benchmark_of


def provenance(frame: pd.DataFrame, fmt: str) -> str:
    runs = frame.drop_duplicates("run_dir")
    commits = [
        f"{commit[:12]}{' (dirty tree)' if dirty else ''}"
        for commit, dirty in sorted(set(zip(runs["commit"], runs["dirty"], strict=True)))
    ]
    versions = {
        name.removeprefix("version_"): ", ".join(sorted(set(map(str, runs[name]))))
        for name in runs.columns
        if name.startswith("version_")
    }
    episodes = runs["eval_episodes"].iloc[0]
    used = set(runs["suite"].map(benchmark_of))
    evaluation = [b.evaluation_line(episodes) for b in BENCHMARKS if b in used]
    lines = [
        f"scale preset: {', '.join(sorted(set(runs['scale'])))}",
        f"seeds: {', '.join(map(str, sorted(set(runs['seed']))))}",
        *evaluation,
        "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "dataset hashes (the suite's tasks in the store's manifest; the heading names the whole "
        "store's): " + ", ".join(h[:12] for h in sorted(set(runs["dataset_hash"]))),
        *["data generators: " + ", ".join(sorted(set(runs["generator"].dropna())))]
        * bool(runs["generator"].notna().any()),
        "code commits: " + ", ".join(commits),
    ]
    if fmt == "latex":
        return "\n".join(f"% {line}" for line in lines)
    return "Provenance:\n\n" + "\n".join(f"- {line}" for line in lines)


def commands(frame: pd.DataFrame) -> str:
    runs = frame.drop_duplicates("run_dir").sort_values("run_dir")
    lines = [
        "#!/usr/bin/env bash",
        "# The command behind every cell of the report, one run each.",
        "set -euo pipefail",
        "",
    ]
    for run in runs.itertuples():
        lines.append(f"# {run.run_dir}")
        lines.append(
            run.command or "# (no command recorded: run made before mtbench saved overrides)"
        )
    return "\n".join(lines) + "\n"

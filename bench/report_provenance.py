"""Under each report section: where its numbers come from (presets, seeds, protocol, versions,
data, commits), and the `bench run` command behind every run (commands.sh)."""

from __future__ import annotations

import pandas as pd

from bench.suites import BENCHMARKS, benchmark_of


def provenance(frame: pd.DataFrame, fmt: str) -> str:
    runs = frame.drop_duplicates("run_dir")
    commits = sorted({commit for made in runs["commits"] for commit in made.split(", ")})
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
        "code commits (every run's start, resumes and end; commands.sh names each run's): "
        + ", ".join(commits),
    ]
    if fmt == "latex":
        return "\n".join(f"% {line}" for line in lines)
    return "Provenance:\n\n" + "\n".join(f"- {line}" for line in lines)


def commands(frame: pd.DataFrame) -> str:
    runs = frame.drop_duplicates("run_dir").sort_values("run_dir")
    stores = ", ".join(sorted(set(runs["store_hash"].str[:12])))
    lines = [
        "#!/usr/bin/env bash",
        "# The command behind every cell of the report, one run each, and the commits that made",
        "# it (start, resumes, end). A run makes its data store when it is missing, so the first",
        f"# command remakes the data too (store hash {stores}; `bench data info` shows it).",
        "set -euo pipefail",
        "",
    ]
    for run in runs.itertuples():
        lines.append(f"# {run.run_dir}, made at {run.commits}")
        lines.append(
            run.command or "# (no command recorded: run made before mtbench saved overrides)"
        )
    return "\n".join(lines) + "\n"

"""Sweeps: expand `bench run -m` overrides into runs and launch them.

The local launcher runs each job as its own `bench run` process, one after another, so a crash
in one run cannot take the others down, and each run resumes or skips by its run directory.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from bench.config import compose_config, expand_sweep
from bench.errors import UserError


def launch(overrides: Sequence[str]) -> int:
    jobs = expand_sweep(overrides)
    configs = [compose_config(job) for job in jobs]  # every job is checked before any starts
    launcher = configs[0]["launcher"]["name"]
    if launcher != "local":
        raise UserError(f"launcher {launcher!r} is not implemented yet; choose one of: local")
    failed = []
    for number, job in enumerate(jobs, start=1):
        print(f"[{number}/{len(jobs)}] bench run {' '.join(job)}", flush=True)
        completed = subprocess.run([sys.executable, "-m", "bench.cli", "run", *job])
        if completed.returncode != 0:
            failed.append(" ".join(job))
    print(f"{len(jobs) - len(failed)} of {len(jobs)} runs finished")
    for job in failed:
        print(f"failed: {job}")
    return 1 if failed else 0

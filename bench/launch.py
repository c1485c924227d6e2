"""Sweeps: expand `bench run -m` overrides into runs, check them all, then launch them.

Every job is composed and checked (bench.settings) before any starts, and no two jobs may
share a run directory. The local launcher runs each job as its own `bench run` process, one
after another, so a crash in one run cannot take the others down, and each run resumes or
skips by its run directory; `launcher=slurm` submits them as job arrays (bench.slurm).
A launcher returns what it ran; the CLI prints their comparison (a report never launches).
Ctrl-C reaches the running job too: it saves its step and stops, and the sweep stops with it;
the same command resumes where it stopped.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.config import expand_sweep
from bench.errors import Interrupted, UserError
from bench.run_claim import resume_advice
from bench.settings import Settings, load_settings

INTERRUPTED = 130


@dataclass(frozen=True)
class Launched:
    """A launched sweep: the exit status, its run directories, and whether every run has ended
    (the local launcher; Slurm with --wait), so that their results can be compared."""

    code: int
    run_dirs: list[Path]
    ended: bool


def plan(overrides: Sequence[str]) -> list[tuple[list[str], Settings]]:
    """Every job of the sweep with its checked settings; a UserError before anything runs."""
    return check_jobs(expand_sweep(overrides))


def check_jobs(job_list: Sequence[list[str]]) -> list[tuple[list[str], Settings]]:
    """Each job's checked settings, once no two share a run directory."""
    from bench.run_claim import check_claimable

    jobs = [(list(job), load_settings(job)) for job in job_list]
    owners: dict[str, list[str]] = {}
    for job, settings in jobs:
        key = str(settings.run_dir.resolve())
        if key in owners:
            raise UserError(
                f"jobs {' '.join(owners[key])!r} and {' '.join(job)!r} are the same run "
                f"({settings.run_dir}); drop one of the repeated values"
            )
        owners[key] = job
        check_claimable(settings)
    return jobs


def launch(overrides: Sequence[str], wait: bool = False) -> Launched:
    """Run the sweep with its launcher: here one job after another, or on Slurm (bench.slurm),
    where `wait` blocks until every run has ended."""
    jobs = plan(overrides)
    run_dirs = [settings.run_dir for _, settings in jobs]
    launchers = {settings.launcher.name for _, settings in jobs}
    if len(launchers) > 1:
        raise UserError(f"a sweep runs with one launcher, not {sorted(launchers)}")
    if launchers == {"slurm"}:
        from bench.slurm import submit_runs

        return Launched(submit_runs(jobs, wait), run_dirs, ended=wait)
    if wait:
        raise UserError("--wait is for launcher=slurm; the local launcher always waits")
    return Launched(run_locally(jobs), run_dirs, ended=True)


def run_locally(jobs: Sequence[tuple[list[str], Settings]]) -> int:
    """Each job as its own `bench run` process, one after another."""
    failed = []
    for number, (job, settings) in enumerate(jobs, start=1):
        print(f"[{number}/{len(jobs)}] bench run {' '.join(job)}", flush=True)
        code = _run_job(job)
        if code == INTERRUPTED:
            # Finished runs are skipped then, unless run.restart=true makes them again.
            advice = resume_advice(settings.run.restart)
            raise Interrupted(f"sweep interrupted at run {number} of {len(jobs)}; {advice}")
        if code != 0:
            failed.append(" ".join(job))
    print(f"{len(jobs) - len(failed)} of {len(jobs)} runs finished")
    for line in failed:
        print(f"failed: {line}")
    return 1 if failed else 0


def _run_job(job: list[str]) -> int:
    # The sweep printed one plan for all its runs before the first.
    process = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", "--no-plan", *job])
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            # The job got the same Ctrl-C: let it finish its step and checkpoint.
            continue

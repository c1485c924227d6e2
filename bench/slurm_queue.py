"""What Slurm knows about a run's job, asked in as few calls as possible.

A run submitted to Slurm keeps its job id in `<run_dir>/slurm.json`. `bench status`, a repeated
submission and `--wait` read the states of all their jobs with one `squeue` call (and at most
one `sacct` call where the cluster keeps accounting): thousands of per-job calls would overload
the controller. When Slurm cannot be reached the run directories alone are reported.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import results
from bench.errors import UserError

JOB_RECORD = "slurm.json"

# squeue states of a job waiting to start again after it ran.
REQUEUED_STATES = {"REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"}
_TIMEOUT_S = 30


def read_job_record(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / JOB_RECORD
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None  # torn by a kill while written: as if never submitted


def read_generation_record(path: Path) -> dict[str, str]:
    """{task: job id} that an earlier `bench data generate ... launcher=slurm` queued into a
    store (empty before the first); a damaged record is refused, as reading it as empty would
    queue its tasks a second time."""
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text())
    except ValueError as error:
        record = error
    if not isinstance(record, dict) or not all(isinstance(v, str) for v in record.values()):
        why = record if isinstance(record, ValueError) else "not {task: job id}"
        raise UserError(
            f"{path} is damaged ({why}); delete it to submit every task the store lacks "
            "(scancel the generation jobs still queued first, or each task is queued twice, "
            "its second job holding a node to wait on the first)"
        )
    return record


def queued_jobs() -> dict[str, str] | None:
    """{job id: state} of this user's jobs Slurm still holds (array tasks one per line, as
    `<array>_<task>`), from one `squeue` call; None when Slurm cannot be reached."""
    command = ["squeue", "--noheader", "--array", "--format=%i|%T", "--me"]
    output = _call(command)
    if output is None:
        return None
    jobs = {}
    for line in output.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id:
            jobs[job_id] = state
    return jobs


def ended_states(job_ids: Iterable[str]) -> dict[str, str]:
    """{job id: final state} from one `sacct` call: CANCELLED, OUT_OF_MEMORY, TIMEOUT, FAILED…
    Empty where the cluster keeps no accounting (or Slurm cannot be reached)."""
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    output = _call(["sacct", "--noheader", "--parsable2", "--allocations",
                    "--format=JobID,State", f"--jobs={','.join(ids)}"])  # fmt: skip
    states = {}
    for line in (output or "").splitlines():
        job_id, _, state = line.partition("|")
        if job_id in ids and state:
            states[job_id] = state.split()[0]  # "CANCELLED by 0" -> CANCELLED
    return states


def max_array_size() -> int:
    """The cluster's MaxArraySize (tasks per array), 1001 (Slurm's default) when unknown."""
    output = _call(["scontrol", "show", "config"]) or ""
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", output, re.MULTILINE)
    return int(match.group(1)) if match else 1001


def run_state(
    file_status: str,
    record: Mapping[str, Any] | None,
    queued: Mapping[str, str] | None,
    ended: Mapping[str, str],
) -> str:
    """A Slurm run's state: its status file, corrected by what the queue says of its job.

    A job the queue holds is pending, requeued (pending again after it ran) or running; a job
    that left the queue while its run still said pending or running was ended from outside
    (cancelled, out of memory, a lost node): no process was left to write why, so it is failed.
    """
    if record is None or queued is None or file_status == "done":
        return file_status
    job_id = str(record["job_id"])
    state = queued.get(job_id)
    if state is not None:
        if file_status.startswith("failed"):
            return file_status  # its job is only finishing (COMPLETING)
        if state in REQUEUED_STATES or (
            state == "PENDING" and file_status.startswith(("interrupted", "requeued"))
        ):
            return "requeued"
        if state == "PENDING":
            return "pending"
        return file_status if results.is_running(file_status) else "running"  # with its phase
    how = ended.get(job_id, "ended").lower()
    if (
        file_status == "pending"
        or results.is_running(file_status)
        or "process is gone" in file_status
    ):
        phase = results.phase_of(file_status)
        where = f" while {phase}" if phase else ""
        return f"failed{where}: job {job_id} {how} without a word from the run; see {record['log']}"
    if file_status.startswith(("interrupted", "requeued")):  # stopped, and never started again
        return f"failed: job {job_id} {how} after it was {file_status}"
    return file_status


def describe_runs(run_dirs: Sequence[Path]) -> tuple[dict[Path, str], str | None]:
    """({run dir: state}, a note when Slurm did not answer), the queue asked once (and sacct
    once, for the jobs it no longer holds)."""
    records = {run_dir: read_job_record(run_dir) for run_dir in run_dirs}
    if not any(records.values()):
        return {run_dir: results.read_status(run_dir) for run_dir in run_dirs}, None
    queued = queued_jobs()
    gone = [r["job_id"] for r in records.values() if r and queued is not None and
            r["job_id"] not in queued]  # fmt: skip
    ended = ended_states(gone)
    states = {
        run_dir: run_state(results.read_status(run_dir), record, queued, ended)
        for run_dir, record in records.items()
    }
    note = None if queued is not None else "Slurm does not answer: states from the run folders"
    return states, note


def _call(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None

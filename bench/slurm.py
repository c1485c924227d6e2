"""`launcher=slurm`: a sweep as Slurm job arrays through submitit, one run directory per task.

    bench run -m method=harmodt_f,mtbc seed=0,1,2 tasks=mt50 launcher=slurm [--wait]
    bench data generate tasks=mt50 launcher=slurm

Submission checks every job first (bench.launch.plan), then submits only what is left to do:
a run that is done, whose lock a live process holds, or whose recorded job Slurm still holds is
not submitted again. Each run directory records its job id (`slurm.json`) and the commit it
was submitted from. Logs live under `<run.root>/.slurm/<job id>/` (shared storage, not /tmp).

A job that Slurm preempts or times out is requeued and resumes from the checkpoint on disk,
never from pickled memory: the preemption signal (submitit's USR2) is turned into the run's
stop request, so training stops after its current step with a checkpoint, and only then does
submitit's hook (`RunJob.checkpoint`) requeue the same arguments. A `scontrol requeue` sends
SIGTERM, which stops the run the same way; Slurm then starts the job again.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import submitit
from tqdm import tqdm

from bench import results
from bench.atomic import write_json
from bench.data.locations import dataset_path
from bench.data.store import read_manifest
from bench.errors import Interrupted, UserError, check_all, count_problem
from bench.run_lock import RunLock, is_held
from bench.settings import Settings
from bench.slurm_queue import (
    JOB_RECORD,
    describe_runs,
    max_array_size,
    queued_jobs,
    read_generation_record,
    read_job_record,
)
from bench.suites import Suite

POLL_SECONDS = 5.0  # --wait: one squeue call per poll


@dataclass(frozen=True)
class SlurmOptions:
    """configs/launcher/slurm.yaml, checked; each key overridable as `launcher.<key>=…`."""

    partition: str | None
    time_min: int
    cpus_per_task: int
    mem_gb: int | None
    gpus_per_node: int
    qos: str | None
    account: str | None
    array_parallelism: int
    max_timeouts: int
    max_array_size: int | None
    sbatch: dict[str, Any]
    setup: list[str]
    python: str | None

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> SlurmOptions:
        values = {k: v for k, v in section.items() if k != "name"}
        minimums = {"time_min": 1, "cpus_per_task": 1, "gpus_per_node": 0,
                    "array_parallelism": 1, "max_timeouts": 0, "mem_gb": 1,
                    "max_array_size": 1}  # fmt: skip
        problems = {}
        for key, low in minimums.items():
            value = values.get(key)
            if key in ("mem_gb", "max_array_size") and value is None:
                continue
            problem = count_problem(f"launcher.{key}", value, low)
            if problem:
                problems[problem] = True
        sbatch, setup = values.get("sbatch"), values.get("setup")
        problems[f"launcher.sbatch must map sbatch options to values, got {sbatch!r}"] = (
            not isinstance(sbatch, Mapping)
        )
        problems[f"launcher.setup must be a list of shell lines, got {setup!r}"] = not isinstance(
            setup, list
        )
        check_all("launcher", problems)
        checked: dict[str, Any] = {f.name: values.get(f.name) for f in dataclasses.fields(cls)}
        return cls(**checked)

    def executor(self, folder: Path, job_name: str) -> submitit.SlurmExecutor:
        executor = submitit.SlurmExecutor(
            folder=folder, max_num_timeout=self.max_timeouts, python=self.python
        )
        optional = {
            "partition": self.partition,
            "mem": f"{self.mem_gb}GB" if self.mem_gb else None,
            "gpus_per_node": self.gpus_per_node or None,
            "qos": self.qos,
            "account": self.account,
        }
        executor.update_parameters(
            job_name=job_name,
            time=self.time_min,
            cpus_per_task=self.cpus_per_task,
            array_parallelism=self.array_parallelism,
            additional_parameters=dict(self.sbatch),
            setup=list(self.setup),
            **{key: value for key, value in optional.items() if value is not None},
        )
        return executor


# Submission --------------------------------------------------------------------------------------


def submit_runs(jobs: Sequence[tuple[list[str], Settings]], wait: bool) -> int:
    """Submit the runs of a checked sweep that are left to do; with `wait`, block until every
    run has ended."""
    options = _one_launcher(jobs)
    for _, settings in jobs:
        _check_data_ready(settings)
        if settings.device.startswith("cuda") and not options.gpus_per_node:
            raise UserError(
                f"device={settings.device} with launcher.gpus_per_node=0: the jobs would get no "
                "GPU; set launcher.gpus_per_node=1"
            )
    logs = _runs_root(jobs) / ".slurm"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "submit.lock", "a") as guard:
        # Two submissions of one sweep at once would both see its runs as not yet queued.
        fcntl.flock(guard, fcntl.LOCK_EX)
        return _submit_left(jobs, options, logs, wait)


def _submit_left(
    jobs: Sequence[tuple[list[str], Settings]], options: SlurmOptions, logs: Path, wait: bool
) -> int:
    from bench.config import REPO_ROOT

    queued = queued_jobs()
    if queued is None:
        raise UserError(
            "launcher=slurm: Slurm does not answer (`squeue` failed); check SLURM_CONF and that "
            "the cluster is up (scripts/slurm-local.sh up starts a local one)"
        )
    todo, done, live = [], 0, 0
    for job, settings in jobs:
        record = read_job_record(settings.run_dir)
        if (settings.run_dir / results.RESULT).exists() and not settings.run.restart:
            done += 1
        elif is_held(settings.run_dir) or (record is not None and record["job_id"] in queued):
            live += 1
        else:
            todo.append((job, settings))
    print(f"{len(jobs)} runs: {done} done, {live} pending or running, {len(todo)} to submit")
    run_dirs = [settings.run_dir for _, settings in jobs]
    if todo:
        _submit(todo, options, results.git_commit(REPO_ROOT), logs)
    else:
        print("nothing to submit")
    if not wait:
        print(f"follow them with: bench status {_runs_root(jobs)}")
        return 0
    return wait_for_runs(run_dirs)


def _submit(
    todo: Sequence[tuple[list[str], Settings]],
    options: SlurmOptions,
    commit: dict[str, Any],
    logs: Path,
) -> None:
    from submitit.core.utils import FailedJobError

    executor = options.executor(logs / "%j", job_name="bench-run")
    size = options.max_array_size or max_array_size()
    for start in range(0, len(todo), size):
        chunk = slice(start, start + size)
        existed = {s.run_dir for _, s in todo[chunk] if s.run_dir.exists()}
        before = {s.run_dir: (s.run_dir / results.STATUS).read_text() for _, s in todo[chunk]
                  if (s.run_dir / results.STATUS).exists()}  # fmt: skip
        arguments = [_prepare(job, settings) for job, settings in todo[chunk]]
        count = len(arguments)
        try:
            with _sbatch_stderr() as said:
                submitted = executor.map_array(
                    RunJob(), arguments, [os.getcwd()] * count, [commit] * count
                )
        except FailedJobError as error:
            for _, settings in todo[chunk]:  # as they were: nothing was submitted for them
                run_dir = settings.run_dir
                _unprepare(run_dir, before.get(run_dir), run_dir in existed)
            text = f"{said[0] if said else ''}\n{error}"
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            reason = next((line for line in lines if "error" in line.lower()), "sbatch failed")
            raise UserError(f"sbatch refused the jobs: {reason}") from None
        for (_, settings), job in zip(todo[chunk], submitted, strict=True):
            record = {
                "job_id": job.job_id,
                "submitted": datetime.now(UTC).isoformat(timespec="seconds"),
                "commit": commit,
                "log": str(job.paths.stdout).replace("%j", job.job_id),
            }
            write_json(settings.run_dir / JOB_RECORD, record)
            results.discard_set_aside(settings.run_dir)
        array = submitted[0].job_id.split("_")[0]
        print(f"submitted job array {array} ({count} runs); logs in {logs}/{array}_<task>/")


def _prepare(job: list[str], settings: Settings) -> list[str]:
    """The job's overrides, after making its run directory show it as pending. `run.restart`
    is done here, once: a requeued job that cleared its run again would lose its checkpoint."""
    run_dir = settings.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        if settings.run.restart:  # undone if sbatch refuses the array
            results.set_aside_run(run_dir)
        results.write_status(run_dir, "pending")
    finally:
        lock.release()
    return [override for override in job if override.split("=")[0].lstrip("+~") != "run.restart"]


@contextmanager
def _sbatch_stderr() -> Iterator[list[str]]:
    """What sbatch writes to stderr (submitit lets it through to ours), kept for the one-line
    error and passed on when the submission succeeds."""
    said: list[str] = []
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+") as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            said.append(captured.read())
    sys.stderr.write(said[0])  # reached only when the submission went through


def _unprepare(run_dir: Path, status: str | None, existed: bool) -> None:
    """Undo `_prepare` for a run whose submission failed."""
    results.restore_run(run_dir)  # what run.restart=true had set aside
    if status is not None:
        results.write_status(run_dir, status.strip())
        return
    (run_dir / results.STATUS).unlink(missing_ok=True)
    if not existed:
        (run_dir / ".lock").unlink(missing_ok=True)
        for folder in (run_dir, *run_dir.parents):  # the folders _prepare made, if now empty
            try:
                folder.rmdir()
            except OSError:
                break


def _check_data_ready(settings: Settings) -> None:
    """Generated data must exist before runs are submitted: 50 jobs finding it missing would
    each start generating the same store. The store is the suite's (SAC experts for the meta-RL
    families), holding every task a run reads (their held-out tasks too)."""
    data, suite = settings.data, settings.suite
    if data.path:
        return  # checked with the settings
    store = dataset_path(data.section(), suite)
    missing = _missing_tasks(store, suite.data_tasks)
    if missing:
        keys = suite.benchmark.store_keys
        if suite.benchmark.trains_experts:  # in one process (submit_generation)
            command, then = "", "then submit"
        else:
            command, then = "launcher=slurm", "then submit once its jobs are done"
        section = data.section()
        values = " ".join([*(f"data.{key}={section[key]}" for key in keys), command]).strip()
        raise UserError(
            f"{store} lacks {len(missing)} of the {len(suite.data_tasks)} tasks of {suite.name} "
            f"(first: {missing[0]}); make it first: `bench data generate tasks={suite.name} "
            f"{values}`, {then}"
        )


def _missing_tasks(store: Path, tasks: Sequence[str]) -> list[str]:
    """The tasks a generated store's manifest does not list yet (all of them without one)."""
    listed = set(read_manifest(store)["tasks"]) if (store / "manifest.json").exists() else set()
    return [task for task in tasks if task not in listed]


def _runs_root(jobs: Sequence[tuple[list[str], Settings]]) -> Path:
    return jobs[0][1].run.root


def _one_launcher(jobs: Sequence[tuple[list[str], Settings]]) -> SlurmOptions:
    """The sweep's Slurm options: one job array has one set of them, and one log folder."""
    for key in ("launcher", "run.root"):
        section, _, name = key.partition(".")
        values = {json.dumps(s.config[section].get(name) if name else s.config[section],
                             sort_keys=True) for _, s in jobs}  # fmt: skip
        if len(values) > 1:
            raise UserError(
                f"a launcher=slurm sweep cannot vary {key} (one job array, one log folder); "
                "submit one sweep per value"
            )
    return SlurmOptions.from_config(jobs[0][1].launcher.options)


# Waiting -----------------------------------------------------------------------------------------


def wait_for_runs(run_dirs: Sequence[Path], poll_seconds: float = POLL_SECONDS) -> int:
    """Block until every run is done or its job has left the queue; say which did not finish."""
    bar = tqdm(total=len(run_dirs), unit="run", desc="slurm runs", smoothing=0)
    try:
        with bar:
            while True:
                ended = _ended(run_dirs, queued_jobs())
                bar.update(len(ended) - bar.n)
                if len(ended) == len(run_dirs):
                    break
                time.sleep(poll_seconds)
    except KeyboardInterrupt:
        raise Interrupted("stopped waiting; the jobs go on (bench status shows them)") from None
    states, _ = describe_runs(run_dirs)
    failed = [(run_dir, state) for run_dir, state in states.items() if state != "done"]
    print(f"{len(run_dirs) - len(failed)} of {len(run_dirs)} runs finished")
    for run_dir, state in failed:
        print(f"{run_dir}: {state}")
    return 1 if failed else 0


def _ended(run_dirs: Sequence[Path], queued: Mapping[str, str] | None) -> list[Path]:
    if queued is None:  # Slurm unreachable for a moment: only results count
        return [run_dir for run_dir in run_dirs if (run_dir / results.RESULT).exists()]
    ended = []
    for run_dir in run_dirs:
        record = read_job_record(run_dir)
        if (run_dir / results.RESULT).exists() or record is None or record["job_id"] not in queued:
            ended.append(run_dir)
    return ended


# The jobs ----------------------------------------------------------------------------------------


def _preempt_signal() -> signal.Signals:
    # The signal submitit asks Slurm to send before a time limit or a preemption.
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


class RunJob(submitit.helpers.Checkpointable):
    """One array task: one run, as `bench run <overrides>` would do it, from the folder the
    sweep was submitted in."""

    def __call__(self, overrides: list[str], cwd: str, submitted: dict[str, Any]) -> dict:
        from bench.config import REPO_ROOT
        from bench.runner import execute
        from bench.settings import check_device, load_settings

        os.chdir(cwd)
        settings = load_settings(overrides)
        try:
            check_device(settings.device)  # on this node: submission could not check it
        except UserError as error:
            results.write_status(settings.run_dir, f"failed: {error}")
            raise
        started = results.git_commit(REPO_ROOT)
        launch = {
            "launcher": "slurm",
            "job_id": _job_id(),
            "restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
            "submitted_commit": submitted["commit"],
            "started_commit": started["commit"],
        }
        if started["commit"] != submitted["commit"]:
            print(
                f"warning: submitted at commit {submitted['commit'][:12]}, starting on "
                f"{started['commit'][:12]}: the run's config.yaml records both",
                flush=True,
            )
        with _PreemptionAsStop() as preemption:
            try:
                return execute(settings, REPO_ROOT, launch=launch)
            except Interrupted as stop:
                if preemption.caught:
                    preemption.requeue(settings.run_dir)
                print(stop, flush=True)
                raise SystemExit(128 + int(stop.signal_number)) from None

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """submitit's hook at a preemption or time limit: the same run again, which resumes
        from its checkpoint on disk (the arguments hold no state of this process)."""
        return submitit.helpers.DelayedSubmission(type(self)(), *args, **kwargs)


class _PreemptionAsStop:
    """Turn the preemption signal into SIGTERM (the run's stop request) for the block, and
    keep submitit's own handler to call once the run has stopped."""

    def __enter__(self) -> _PreemptionAsStop:
        self.number = _preempt_signal()
        self.submitit_handler = signal.getsignal(self.number)
        self.caught = False

        def forward(number: int, frame: object) -> None:
            self.caught = True
            signal.raise_signal(signal.SIGTERM)

        signal.signal(self.number, forward)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(self.number, self.submitit_handler)

    def requeue(self, run_dir: Path) -> None:
        """After the signal stopped the run: submitit calls `RunJob.checkpoint`, requeues the
        job (time limits count against launcher.max_timeouts) and exits; past the limit the
        run is failed."""
        from submitit.core.utils import UncompletedJobError

        status = results.read_status(run_dir)
        results.write_status(run_dir, status.replace("interrupted", "requeued", 1))
        if not callable(self.submitit_handler):
            return  # not started by submitit: nothing to requeue with
        try:
            self.submitit_handler(self.number, None)
        except UncompletedJobError as error:
            results.write_status(run_dir, f"failed: not requeued: {error}")
            raise


def _job_id() -> str:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "unknown")


# Data generation ---------------------------------------------------------------------------------


def submit_generation(suite: Suite, data: Mapping[str, Any], launcher: Mapping[str, Any]) -> int:
    """One job per task of `suite` the store lacks; each writes its task and lists it in the
    manifest (under the manifest's lock)."""
    if suite.benchmark.trains_experts:
        raise UserError(
            f"launcher=slurm generates Meta-World data only; the {suite.name} experts are "
            "trained in one process: run `bench data generate` without launcher=slurm"
        )
    options = SlurmOptions.from_config(launcher)
    store = dataset_path(data, suite)
    missing = _missing_tasks(store, suite.tasks)
    if not missing:
        print(f"{store}: every task of {suite.name} is there; nothing to submit")
        return 0
    queue = queued_jobs()
    if queue is None:
        raise UserError("launcher=slurm: Slurm does not answer (`squeue` failed)")
    # Tasks queued earlier are not queued again: a second job would only wait on their lock.
    record = store.parent / f".{store.name}.slurm-generation.json"
    earlier = read_generation_record(record)
    waiting = {task: earlier[task] for task in missing if earlier.get(task) in queue}
    missing = [task for task in missing if task not in waiting]
    if waiting:
        print(f"{len(waiting)} tasks already queued (jobs {', '.join(sorted(waiting.values()))})")
    if not missing:
        print("nothing more to submit")
        return 0
    logs = store.parent / ".slurm"
    executor = options.executor(logs / "%j", job_name="bench-data")
    count = len(missing)
    jobs = executor.map_array(generate_task_job, missing, [dict(data)] * count,
                              [os.getcwd()] * count)  # fmt: skip
    write_json(record, {**waiting, **{t: job.job_id for t, job in zip(missing, jobs, strict=True)}})
    array = jobs[0].job_id.split("_")[0]
    print(f"submitted job array {array}: {count} tasks of {suite.name} into {store}; "
          f"logs in {logs}/{array}_<task>/")  # fmt: skip
    print(f"submit the runs once it is done (squeue --jobs={array} shows it)")
    return 0


def generate_task_job(task: str, data: dict[str, Any], cwd: str) -> str:
    """One generation array task: one task's data, in one process (the node's CPUs are the
    job's)."""
    from bench.data.prepare import open_dataset

    os.chdir(cwd)
    open_dataset({**data, "workers": 1}, Suite(task, (task,)), progress=False)
    print(f"{task}: written", flush=True)
    return task

"""One run = (method, suite, data, seed, non-default values): train, checkpoint, resume, evaluate.

The lifecycle of a run directory (bench.results has the files):

- one process at a time holds its lock (bench.run_lock); a second launch is refused, naming it;
- a run whose result.json exists is done and is skipped; `run.restart=true` starts it over;
- a run with a checkpoint resumes from it bit-for-bit: the method's state, every global
  generator (bench.process_state) and the step live in the checkpoint, and resuming onto a
  dataset whose manifest changed is refused; a periodic evaluation due at the checkpoint's
  step that metrics.jsonl lacks (the run stopped in it) is made first;
- a directory holding a different config is replaced when it made no progress (a failed
  start), and refused with a way out when it did (bench.run_claim);
- its status says the phase it is in (`running: training`) and, once stopped, the one it
  stopped in;
- Ctrl-C or SIGTERM stops after the current step with a checkpoint, status `interrupted`,
  and one line (during an evaluation, at once: the run makes it again when it resumes);
  a NaN loss stops with status `failed` and no result.json.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import torch
from tqdm import tqdm

from bench import results
from bench.atomic import write_json
from bench.data.generate import generator_name
from bench.data.locations import dataset_path
from bench.data.prepare import open_dataset
from bench.errors import Interrupted, RunFailed, UserError
from bench.evaluate import EvalProtocol, evaluate
from bench.plan import first_rate_line
from bench.process_state import capture_rng_state, restore_rng_state, seed_everything, set_threads
from bench.registry import ActsOnUnseenTasks, Method, build_for_run
from bench.run_claim import claim_directory, damaged, resume_advice
from bench.run_lock import RunLock
from bench.run_result import (
    BestOf,
    DamagedResult,
    DataInfo,
    Protocol,
    RunResult,
    TaskScore,
    WallTime,
)
from bench.settings import Settings
from bench.stop_signals import StopRequest, handle_stop_signals
from bench.suites import Suite
from bench.tracking import Trackers, hyperparameters, start_trackers

Say = Callable[[str], None]


def _print(line: str) -> None:
    tqdm.write(line)  # above a progress bar that is showing, not through it
    sys.stdout.flush()


def execute(
    settings: Settings,
    repo: Path,
    say: Say = _print,
    launch: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run (or resume, or skip) the run of `settings`; returns its result. `launch` says how
    it was started where that is not this process's command line (a Slurm job). A full disk
    is one line (exit status 2); the run resumes from its last checkpoint once space is freed."""
    with results.one_line_when_full(settings.run_dir):
        return _execute(settings, repo, say, launch)


def _execute(
    settings: Settings, repo: Path, say: Say, launch: Mapping[str, Any] | None
) -> dict[str, Any]:
    run_dir = settings.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        results.remove_stale_temporaries(run_dir)
        claim_directory(settings, run_dir, say)
        result_path = run_dir / results.RESULT
        if result_path.exists():
            try:
                done = RunResult.from_json(json.loads(result_path.read_text()))
            except (ValueError, DamagedResult) as error:
                raise damaged(result_path, error) from None
            say(f"skipped: {run_dir} is done (run.restart=true runs it again)")
            return done.to_json()
        if not (run_dir / results.CONFIG).exists():
            results.write_yaml(run_dir / results.CONFIG, _saved_config(settings, repo, launch))
        run = _Run(settings, run_dir, repo, say, launch)
        run.enter(results.LOADING)
        with handle_stop_signals(StopRequest()) as stop:
            try:
                run_result = run.train_and_evaluate(stop)
            except KeyboardInterrupt:
                results.write_status(run_dir, run.interrupted_status())
                raise run.interrupted(stop) from None
            except Interrupted:
                results.write_status(run_dir, run.interrupted_status())
                raise
            except (UserError, RunFailed) as error:
                results.write_status(run_dir, results.failed(run.phase, str(error)))
                raise
            except BaseException as error:
                why = f"{type(error).__name__}: {error}"
                results.write_status(run_dir, results.failed(run.phase, why))
                raise
        if launch:
            run_result = replace(run_result, launch=dict(launch))
        result = run_result.to_json()
        write_json(result_path, result)
        results.write_status(run_dir, "done")
        return result
    finally:
        lock.release()


def _saved_config(
    settings: Settings, repo: Path, launch: Mapping[str, Any] | None
) -> dict[str, Any]:
    return {
        "config": settings.config,
        "overrides": list(settings.overrides),
        "non_default": settings.non_default,
        "git": results.git_commit(repo),
        "command": results.command_line(),
        "versions": results.versions(),
        **({"launch": dict(launch)} if launch else {}),
    }


class _Run:
    """The training and evaluation of one claimed run directory."""

    def __init__(
        self,
        settings: Settings,
        run_dir: Path,
        repo: Path,
        say: Say,
        launch: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.repo = repo
        self.say = say
        self.launch = launch  # a Slurm job's id and commits; each resume records its own
        self.checkpoint_step = 0  # the step and training time of the checkpoint on disk
        self.checkpoint_train_seconds = 0.0
        self.phase = results.LOADING
        self.trackers = Trackers()  # opened once the run knows where it resumes (`_track`)

    def train_and_evaluate(self, stop: StopRequest) -> RunResult:
        settings, say = self.settings, self.say
        set_threads(settings.threads, settings.interop_threads)
        seed_everything(settings.seed)
        suite = settings.suite
        data_config = settings.data
        say(f"run: {self.run_dir}")
        store_path = dataset_path(data_config.section(), suite)
        say(f"data: {store_path}")
        for note in settings.method_config.run_notes(suite):
            say(f"note: {note}")
        store = open_dataset(data_config.section(), suite, settings.progress)
        # The bytes it trains on, re-hashed before the first step: bench.data.store says why.
        store.verify(suite.data_tasks)
        data, method = build_for_run(settings, store)
        self.dataset_hash = results.dataset_hash(store.manifest, suite.data_tasks)
        self.commit = results.git_commit(self.repo)
        protocol = eval_protocol(settings, store.manifest)
        start, train_seconds = self._resume(method)
        self.enter(results.TRAINING)
        self.trackers = self._track(start)
        try:
            self._train(method, start, train_seconds, protocol, stop)
            self.enter(results.FINAL_EVALUATION)
            eval_start = time.perf_counter()
            scores = evaluate(suite, method.policy, protocol, settings.progress)
            eval_seconds = time.perf_counter() - eval_start
            total_steps = settings.train.steps
            event = {"event": "eval", "step": total_steps, "final": True, **_scores_only(scores)}
            self._record(event)
        finally:
            self.trackers.close(self.checkpoint_step)
        data_record = {
            "name": data_config.name,
            "generator": generator_name(store.manifest),
            **data.summary(),
        }
        # Never the run's score: reported beside it, labelled, as the official code's.
        best = results.best_of_evaluations(results.read_metrics(self.run_dir))
        return RunResult(
            method=settings.method_name,
            suite=suite.name,
            tasks=tuple(suite.tasks),
            test_tasks=tuple(suite.test_tasks) if suite.test_tasks else None,
            data=DataInfo.from_json(data_record),
            dataset_hash=self.dataset_hash,
            dataset_verified=True,  # its files matched dataset_hash's records at the start
            dataset_store={
                "path": str(store_path),
                "hash": results.store_hash(store.manifest),
            },
            scale=settings.scale,
            seed=settings.seed,
            non_default=settings.non_default,
            steps=total_steps,
            success_rate=scores["success_rate"],
            mean_return=scores["mean_return"],
            per_task={task: TaskScore.from_json(r) for task, r in scores["per_task"].items()},
            protocol=Protocol.from_json(
                {**scores["protocol"], "checkpoint": f"final (step {self.checkpoint_step})"}
            ),
            best_of_evaluations=BestOf.from_json(best) if best else None,
            unseen_tasks=_unseen_tasks(suite, method),
            num_parameters=method.num_parameters(),
            device=settings.device,
            torch_threads=torch.get_num_threads(),
            wall_time_s=WallTime(self.checkpoint_train_seconds, eval_seconds),
            versions=results.versions(),
            git=self.commit,
            run_dir=str(self.run_dir),
        )

    def _record(self, event: Mapping[str, Any]) -> None:
        """Every event goes to metrics.jsonl and, as the same event, to the trackers."""
        results.append_metrics(self.run_dir, event)
        self.trackers.log(event)

    def _track(self, start: int) -> Trackers:
        """The trackers of `logger=`, caught up with metrics.jsonl as `_resume` left it."""
        settings = self.settings
        identity = {
            "run_dir": str(self.run_dir),
            "method": settings.method_name,
            "suite": settings.suite.name,
            "data": settings.data.name,
            "scale": settings.scale,
            "seed": settings.seed,
            "non_default": settings.non_default,
            "git": self.commit,
        }
        about = hyperparameters(settings.config, identity)
        return start_trackers(
            settings.loggers, self.run_dir, about, settings.suite.tasks, start, self.say
        )

    def enter(self, phase: str) -> None:
        """The run is now in `phase`: its status says so (written at each change only)."""
        self.phase = phase
        results.write_status(self.run_dir, results.running(phase))

    def interrupted_status(self) -> str:
        """Before training, the checkpoint (the step a resume starts from) is not read yet."""
        known = self.phase not in (results.LOADING, results.RESUMING)
        return results.interrupted(self.phase, self.checkpoint_step if known else None)

    def interrupted(self, stop: StopRequest) -> Interrupted:
        message = f"{self.interrupted_status()}; {resume_advice(self.settings.run.restart)}"
        return Interrupted(message, stop.signal_number or signal.SIGINT)

    # Checkpoints ------------------------------------------------------------------------------

    def _resume(self, method: Method) -> tuple[int, float]:
        path = self.run_dir / results.CHECKPOINT
        if not path.exists():
            results.truncate_metrics(self.run_dir, lambda event: False)
            return 0, 0.0
        self.enter(results.RESUMING)
        checkpoint = results.load_checkpoint(path)
        if "rng" not in checkpoint or "dataset_hash" not in checkpoint:
            raise UserError(
                f"{path} was written by an older mtbench (no generator state or dataset hash); "
                "run.restart=true starts the run over"
            )
        if checkpoint["dataset_hash"] != self.dataset_hash:
            raise UserError(
                f"the dataset changed since {self.run_dir} started (manifest hash "
                f"{checkpoint['dataset_hash'][:12]} -> {self.dataset_hash[:12]}); resuming would "
                "mix two datasets: run.restart=true starts over on the new one"
            )
        method.load_state_dict(checkpoint["method"])
        restore_rng_state(checkpoint["rng"])
        step = int(checkpoint["step"])
        self.checkpoint_step = step
        self.checkpoint_train_seconds = float(checkpoint["train_seconds"])
        # A final evaluation recorded before the process ended (before result.json) is made
        # again: kept, it would count twice among the best-of's evaluations.
        results.truncate_metrics(
            self.run_dir, lambda event: event.get("step", 0) <= step and not event.get("final")
        )
        event = {
            "event": "resume",
            "step": step,
            "git": self.commit,
            "dataset_hash": self.dataset_hash,
            "device": self.settings.device,
            "threads": torch.get_num_threads(),
            **({"launch": dict(self.launch)} if self.launch else {}),
        }
        self._record(event)
        self.say(f"resuming from step {step} of {self.settings.train.steps}")
        for key, now in (("device", self.settings.device), ("threads", torch.get_num_threads())):
            if checkpoint.get(key) is not None and checkpoint[key] != now:
                self.say(
                    f"warning: {key} is {now}, the run started with {checkpoint[key]}: its "
                    "result may differ in rounding from an uninterrupted run's"
                )
        return step, float(checkpoint["train_seconds"])

    def _save_checkpoint(self, method: Method, step: int, train_seconds: float) -> None:
        state = {
            "step": step,
            "train_seconds": train_seconds,
            "method": method.state_dict(),
            "rng": capture_rng_state(),
            "dataset_hash": self.dataset_hash,
            "git": self.commit["commit"],
            "device": self.settings.device,
            "threads": torch.get_num_threads(),
        }
        results.save_checkpoint(self.run_dir / results.CHECKPOINT, state)
        self.checkpoint_step = step
        self.checkpoint_train_seconds = train_seconds

    # Training ---------------------------------------------------------------------------------

    def _train(
        self,
        method: Method,
        start: int,
        train_seconds: float,
        protocol: EvalProtocol,
        stop: StopRequest,
    ) -> None:
        settings = self.settings
        train, total_steps = settings.train, settings.train.steps
        if start >= total_steps:
            return
        session_start = time.perf_counter()
        paused = 0.0  # time spent in periodic evaluations, which is not training time
        window_start, window_steps = session_start, 0
        told_duration = False
        seconds = lambda: train_seconds + time.perf_counter() - session_start - paused
        if results.periodic_evaluation_lost(self.run_dir, start, train.eval_every, total_steps):
            # The run stopped in the periodic evaluation that follows its checkpoint: that
            # evaluation is made now, at the same weights, so none of a run's N is lost.
            paused += self._periodic_evaluation(method, start, protocol)
            window_start = time.perf_counter()  # the first rate window is training's alone
        bar = tqdm(total=total_steps, initial=start, desc="train", disable=not settings.progress)
        with bar, stop.deferred():
            for step in range(start, total_steps):
                logs = method.train_step(step)
                _check_finite(logs, step)
                done, window_steps = step + 1, window_steps + 1
                for event in method.pop_events():
                    self._record({**event, "step": event.get("step", done)})
                bar.update()
                if done % train.log_every == 0 or done == total_steps:
                    now = time.perf_counter()
                    rate = window_steps / max(now - window_start, 1e-9)
                    event = {"event": "train", "step": done, **logs, "steps_per_second": rate}
                    self._record(event)
                    bar.set_postfix(loss=f"{logs.get('loss', float('nan')):.4f}")
                    window_start, window_steps = now, 0
                    if not told_duration:
                        self.say(first_rate_line(settings, rate, done))
                        told_duration = True
                if done % train.checkpoint_every == 0 or done == total_steps:
                    self._save_checkpoint(method, done, seconds())
                if stop.requested:
                    if self.checkpoint_step != done:
                        self._save_checkpoint(method, done, seconds())
                    raise self.interrupted(stop)
                if train.eval_every and done % train.eval_every == 0 and done < total_steps:
                    if self.checkpoint_step != done:
                        # A stop does not wait for the evaluation: the run resumes here and
                        # makes it again (`periodic_evaluation_lost`).
                        self._save_checkpoint(method, done, seconds())
                    paused += self._periodic_evaluation(method, done, protocol, stop)
                    # A new rate window: the evaluation's time and steps are not training's.
                    window_start, window_steps = time.perf_counter(), 0

    def _periodic_evaluation(
        self,
        method: Method,
        done: int,
        protocol: EvalProtocol,
        stop: StopRequest | None = None,
    ) -> float:
        """An evaluation during training, recorded as an `eval` event; its seconds. A stop
        requested of `stop` ends it at once."""
        eval_start = time.perf_counter()
        self.enter(results.evaluating(done))
        with stop.immediate() if stop else nullcontext():
            scores = evaluate(self.settings.suite, method.policy, protocol, progress=False)
        self._record({"event": "eval", "step": done, "final": False, **_scores_only(scores)})
        self.enter(results.TRAINING)
        return time.perf_counter() - eval_start


def _check_finite(logs: Mapping[str, float], step: int) -> None:
    bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
    if bad:
        name, value = next(iter(bad.items()))
        raise RunFailed(
            f"{name} is {value} at step {step}: training diverged; no result written "
            "(check the data, or lower the learning rate)"
        )


def eval_protocol(settings: Settings, manifest: Mapping[str, Any] | None = None) -> EvalProtocol:
    """The evaluation protocol of a run: goals (meta-RL: resets) are seeded from the run seed;
    meta-RL tasks keep the parameters their data was made with (`manifest`)."""
    suite = settings.suite
    benchmark = suite.benchmark
    recorded = benchmark.task_parameters(manifest or {"tasks": {}}, suite.evaluation_tasks)
    return EvalProtocol(
        episodes=settings.eval.episodes,
        goal_pool_seed=settings.eval.goal_pool_seed_offset + settings.seed,
        goal_selection_seed=settings.seed,
        max_steps=benchmark.episode_steps,
        benchmark=benchmark,
        task_parameters=recorded,
    )


def _unseen_tasks(suite: Suite, method: Method) -> dict[str, Any] | None:
    """How the method acted on the suite's unseen test tasks (its own words), if it has any;
    settings refused a method without such a rule."""
    if not suite.unseen_tasks:
        return None
    rule = cast(ActsOnUnseenTasks, method).unseen_task_rule
    return {"tasks": list(suite.unseen_tasks), "acting": rule}


def _scores_only(scores: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "success_rate": scores["success_rate"],
        "mean_return": scores["mean_return"],
        "per_task": {
            task: {"success_rate": r["success_rate"], "mean_return": r["mean_return"]}
            for task, r in scores["per_task"].items()
        },
    }

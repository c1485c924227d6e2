"""Experiment tracking: a run's metrics.jsonl events, mirrored to TensorBoard and W&B.

metrics.jsonl stays the run's record; a tracker is a view of it. The runner sends every event it
appends there to the trackers too (`Trackers.log`), which turn it into scalars at the training
step (`event_scalars`). A resumed run continues the same curves with no step twice, the way
metrics.jsonl does (the runner truncates it to the checkpoint step): at each start a tracker
says through which step it already holds the file's events, and is sent the rest of the file
again before training goes on (`start_trackers`).

- TensorBoard (`<run_dir>/tensorboard/`) is rebuilt from metrics.jsonl at every start: event
  files cannot be cut short, and its writer flushes every two minutes, so what a killed
  process left there is neither complete nor free of steps past the checkpoint.
- W&B (`<run_dir>/wandb/`, offline unless WANDB_MODE says otherwise) writes one folder per
  process (a "segment"), all under one run id kept in `wandb/mtbench-segments.json`, so that
  `wandb sync` (or an online run) resumes the same run. wandb writes a segment to disk every
  15 s and when it finishes, and ignores `resume` offline: a segment that did not end at or
  before the checkpoint step (a kill -9, a crash) is deleted at the next start and its events
  are sent again from metrics.jsonl, so the kept segments hold each step once, in order.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

from bench import results
from bench.atomic import write_json
from bench.errors import UserError, unknown_choice
from bench.identity import flatten

Say = Callable[[str], None]

NONE = "none"
# Event kind -> the section its curves go under; kinds not listed use their own name.
SECTIONS = {"mask_update": "harmodt", "mask_schedule": "harmodt/schedule", "harmony": "analysis"}
# Provenance records, not curves (a resume's commit, device and threads).
NOT_CURVES = {"resume"}
NOT_SCALARS = {"event", "step", "final"}


def check_loggers(value: Any) -> tuple[str, ...]:
    """The loggers `logger=` asks for (none, a name, or a list of names), each installed."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise UserError(
            f"logger must be one of {', '.join([NONE, *BACKENDS])} or a list of them "
            f"(logger=[{','.join(BACKENDS)}]), got {value!r}"
        )
    chosen = tuple(dict.fromkeys(name for name in names if name != NONE))
    for name in chosen:
        if name not in BACKENDS:
            raise unknown_choice("logger", name, [NONE, *BACKENDS])
        package = BACKENDS[name].package
        if importlib.util.find_spec(package) is None:
            raise UserError(
                f"logger={name} needs the {package} package, which is not installed: "
                "pip install -e '.[tracking]'"
            )
    return chosen


def event_scalars(event: Mapping[str, Any], tasks: Sequence[str]) -> dict[str, float]:
    """The curves of one metrics.jsonl event, by name: `<section>/<key>`, a nested value's
    parts joined by `_` (harmodt/harmony_masked), per task `<section>/<key>/<task>` for a
    list over the training tasks and `<section>/<task>/<key>` for an evaluation's per_task."""
    kind = str(event.get("event"))
    if kind in NOT_CURVES:
        return {}
    section = SECTIONS.get(kind, kind)
    scalars: dict[str, float] = {}
    for key, value in event.items():
        if key in NOT_SCALARS:
            continue
        if key == "per_task":
            for task, scores in value.items():
                for name, score in scores.items():
                    _add(scalars, f"{section}/{task}/{name}", score)
        elif isinstance(value, Mapping):
            for name, inner in flatten(value).items():
                _add(scalars, f"{section}/{key}_{name.replace('.', '_')}", inner)
        elif isinstance(value, list):
            names = tasks if len(value) == len(tasks) else map(str, range(len(value)))
            for name, item in zip(names, value, strict=True):
                _add(scalars, f"{section}/{key}/{name}", item)
        else:
            _add(scalars, f"{section}/{key}", value)
    return scalars


def _add(scalars: dict[str, float], name: str, value: Any) -> None:
    """Numbers only: a meta-RL run's success rate is None, a schedule's interval may be."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        scalars[name] = float(value)


class Tracker(Protocol):
    """One backend. `start` returns the step through which it already holds the run's events
    (None: none of them), `close` is told the step of the checkpoint on disk."""

    folder: str  # under the run directory
    package: str  # what `pip install -e ".[tracking]"` brings

    def start(self, run_dir: Path, about: Mapping[str, Any]) -> int | None: ...

    def log(self, step: int, scalars: Mapping[str, float]) -> None: ...

    def close(self, checkpoint_step: int) -> None: ...


class Trackers:
    """The run's trackers, fed the events the runner appends to metrics.jsonl."""

    def __init__(self, trackers: Sequence[Tracker] = (), tasks: Sequence[str] = ()) -> None:
        self.trackers = list(trackers)
        self.tasks = tuple(tasks)

    def log(self, event: Mapping[str, Any], trackers: Sequence[Tracker] | None = None) -> None:
        scalars = event_scalars(event, self.tasks) if self.trackers else {}
        if scalars:
            for tracker in self.trackers if trackers is None else trackers:
                tracker.log(int(event["step"]), scalars)

    def close(self, checkpoint_step: int) -> None:
        for tracker in self.trackers:
            tracker.close(checkpoint_step)


def start_trackers(
    loggers: Sequence[str],
    run_dir: Path,
    about: Mapping[str, Any],
    tasks: Sequence[str],
    checkpoint_step: int,
    say: Say,
) -> Trackers:
    """Open the `loggers` of a run that goes on from `checkpoint_step` (0: a fresh start),
    after the runner has cut metrics.jsonl to it, and send each the events it lacks.
    `about` is what the backends record as hyper-parameters (config and identity)."""
    if checkpoint_step == 0:  # as metrics.jsonl is emptied: nothing of an earlier start stays
        for backend in BACKENDS.values():
            shutil.rmtree(run_dir / backend.folder, ignore_errors=True)
    trackers = Trackers([BACKENDS[name](say) for name in loggers], tasks)
    if not trackers.trackers:
        return trackers
    events = results.read_metrics(run_dir)
    for tracker in trackers.trackers:
        held = tracker.start(run_dir, about)
        for event in events:
            if held is None or event.get("step", 0) > held:
                trackers.log(event, [tracker])
    return trackers


def hyperparameters(config: Mapping[str, Any], identity: Mapping[str, Any]) -> dict[str, Any]:
    """What a tracker records about a run: its resolved config and, under `identity`, its
    directory, method, suite, seed, non-default values and git commit."""
    return {**config, "identity": dict(identity)}


# TensorBoard ----------------------------------------------------------------------------------


class TensorBoardTracker:
    folder = "tensorboard"
    package = "tensorboard"  # torch.utils.tensorboard writes with it

    def __init__(self, say: Say) -> None:
        self.say = say

    def start(self, run_dir: Path, about: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams
        from torch.utils.tensorboard.writer import FileWriter

        folder = run_dir / self.folder
        shutil.rmtree(folder, ignore_errors=True)  # rebuilt from metrics.jsonl (module doc)
        self.writer = SummaryWriter(log_dir=str(folder))
        flat = {key: _hparam_value(value) for key, value in flatten(about).items()}
        # The HParams tab compares runs by these, next to their final scores.
        metrics = {"eval/success_rate": 0.0, "eval/mean_return": 0.0}
        # torch types file_writer by the None it starts as; SummaryWriter() opens it
        file_writer = cast(FileWriter, self.writer.file_writer)
        for summary in hparams(flat, metrics):
            file_writer.add_summary(summary)
        self.writer.add_text("config", "```\n" + json.dumps(about, indent=2) + "\n```")
        self.say(f"tensorboard: {folder} (view with: tensorboard --logdir {folder})")

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, global_step=step)

    def close(self, checkpoint_step: int) -> None:
        self.writer.close()


def _hparam_value(value: Any) -> Any:
    """TensorBoard's hparams hold numbers, strings and flags; a list or null as its JSON."""
    return value if isinstance(value, (bool, int, float, str)) else json.dumps(value)


# Weights & Biases -----------------------------------------------------------------------------


class WandbTracker:
    folder = "wandb"
    package = "wandb"
    segments_file = "mtbench-segments.json"

    def __init__(self, say: Say) -> None:
        self.say = say
        self.last_step: int | None = None

    def start(self, run_dir: Path, about: Mapping[str, Any]) -> int | None:
        import wandb

        folder = run_dir / self.folder
        self.state_path = folder / self.segments_file
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        if state.get("open"):  # killed or failed: its steps may pass the checkpoint (module doc)
            shutil.rmtree(folder / state["open"], ignore_errors=True)
        self.run_id = state.get("id") or secrets.token_hex(4)  # wandb ids: [a-z0-9_-]
        self.held: int | None = state.get("through")
        identity = about["identity"]
        relative = _relative_run_dir(run_dir, Path(about["run"]["root"]).expanduser())
        try:
            self.run = wandb.init(
                id=self.run_id,
                resume="allow",
                dir=str(run_dir),
                project=os.environ.get("WANDB_PROJECT", "mtbench"),
                name=relative,
                group=str(Path(relative).parent),  # the seeds of one config side by side
                tags=[identity["method"], identity["suite"], identity["scale"]],
                config=dict(about),
                # Offline unless the user chose a mode: nothing leaves the machine unasked.
                mode=None if "WANDB_MODE" in os.environ else "offline",
                # console="off": wandb would wrap stdout and stderr, under the progress bars.
                settings=wandb.Settings(console="off", silent=True),
            )
        except wandb.Error as error:
            raise UserError(f"logger=wandb: wandb.init failed: {error}") from None
        segment = Path(self.run.dir).parent.name
        write_json(self.state_path, {"id": self.run_id, "through": self.held, "open": segment})
        if self.run.settings.mode == "offline":
            self.say(f"wandb: offline run {self.run_id} in {folder}; upload it with: "
                     f"wandb sync {folder}/offline-run-*")  # fmt: skip
        return self.held

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        # Events of one step make one row: wandb commits it when a later step is logged.
        self.run.log(dict(scalars), step=step)
        self.last_step = step

    def close(self, checkpoint_step: int) -> None:
        ended_at_checkpoint = self.last_step is None or self.last_step <= checkpoint_step
        self.run.finish(exit_code=0 if ended_at_checkpoint else 1)
        if ended_at_checkpoint:  # a complete segment: the next start continues after it
            through = self.held if self.last_step is None else self.last_step
            write_json(self.state_path, {"id": self.run_id, "through": through, "open": None})


def _relative_run_dir(run_dir: Path, root: Path) -> str:
    try:
        return str(run_dir.relative_to(root))
    except ValueError:  # run.dir outside run.root
        return str(run_dir)


BACKENDS: dict[str, type[TensorBoardTracker] | type[WandbTracker]] = {
    "tensorboard": TensorBoardTracker,
    "wandb": WandbTracker,
}

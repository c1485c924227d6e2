"""A run's result.json as one typed record: written by the runner, read by every report.

`RunResult.to_json()` gives the keys, order and values the runner has always written, so a
result.json is the same bytes it was before this type existed; `RunResult.from_json` reads
every older layout too (results made before `best_of_evaluations`, `dataset_verified` or
`data.generator` existed leave those None, and None parts are not written back). A file that
lacks a key the reports need is a `DamagedResult` naming the key: `no 'per_task'`.

The parts that carry more than the reports read (a task's per-episode outcomes, the protocol's
wording, the data counts) keep their whole record as written, in its order, beside the typed
fields read from it: a result round-trips without loss.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import UserError, damage_reason
from bench.results import RESULT


class DamagedResult(Exception):
    """Valid JSON that is not a run's result; the message says why: `no 'per_task'`."""


@dataclass(frozen=True)
class TaskScore:
    """One task's final scores (success_rate None: scored by return, a meta-RL test task)."""

    success_rate: float | None
    mean_return: float
    split: str | None  # a meta-RL suite's "train" or "test"; None where the suite has no split
    record: Mapping[str, Any]  # as written: with its episodes' outcomes and goals

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> TaskScore:
        return cls(record["success_rate"], record["mean_return"], record.get("split"), record)


@dataclass(frozen=True)
class DataInfo:
    """What the run trained on: the data preset, its generator (None: made before results named
    it) and the sampler's counts."""

    name: str
    generator: str | None
    record: Mapping[str, Any]

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> DataInfo:
        return cls(record["name"], record.get("generator"), record)


@dataclass(frozen=True)
class Protocol:
    """How the run was evaluated: episodes per task, the checkpoint scored, and the rest of
    the protocol's words (success rule, goals or resets, seeds)."""

    episodes_per_task: int
    checkpoint: str
    record: Mapping[str, Any]

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Protocol:
        return cls(int(record["episodes_per_task"]), record["checkpoint"], record)


@dataclass(frozen=True)
class BestOf:
    """The best of the run's evaluations (bench.results.best_of_evaluations): never its score,
    reported beside it as the official code's protocol."""

    evaluations: int
    step: int
    success_rate: float | None
    mean_return: float
    record: Mapping[str, Any]

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> BestOf:
        return cls(
            int(record["evaluations"]),
            int(record["step"]),
            record["success_rate"],
            record["mean_return"],
            record,
        )


@dataclass(frozen=True)
class WallTime:
    train: float
    evaluate: float | None  # None: not recorded

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> WallTime:
        return cls(float(record["train"]), record.get("evaluate"))

    def to_json(self) -> dict[str, Any]:
        evaluate = {} if self.evaluate is None else {"evaluate": self.evaluate}
        return {"train": self.train, **evaluate}


@dataclass(frozen=True)
class RunResult:
    """One finished run; None parts are absent from the file (see the module's doc)."""

    method: str
    suite: str
    tasks: tuple[str, ...]
    data: DataInfo
    scale: str
    seed: int
    steps: int | None
    success_rate: float | None  # the mean over tasks; None: a meta-RL run (scored by return)
    mean_return: float | None
    per_task: Mapping[str, TaskScore]
    protocol: Protocol
    num_parameters: int
    wall_time_s: WallTime
    test_tasks: tuple[str, ...] | None = None
    dataset_hash: str | None = None
    dataset_verified: bool | None = None
    dataset_store: Mapping[str, Any] | None = None  # {"path", "hash"}
    non_default: Mapping[str, Any] = field(default_factory=dict)
    best_of_evaluations: BestOf | None = None
    unseen_tasks: Mapping[str, Any] | None = None  # {"tasks", "acting"}
    device: str | None = None
    torch_threads: int | None = None
    versions: Mapping[str, Any] = field(default_factory=dict)
    git: Mapping[str, Any] = field(default_factory=dict)
    run_dir: str | None = None
    launch: Mapping[str, Any] | None = None  # a Slurm job's id and commits
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this type does not know

    @property
    def store_hash(self) -> str | None:
        return (self.dataset_store or {}).get("hash")

    @classmethod
    def from_json(cls, result: Any) -> RunResult:
        """The result a result.json holds; `DamagedResult` names what is missing or wrong."""
        if not isinstance(result, Mapping):
            raise DamagedResult(f"a JSON {type(result).__name__}, not an object")
        try:
            return cls._from_mapping(result)
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise DamagedResult(damage_reason(error)) from None

    @classmethod
    def _from_mapping(cls, result: Mapping[str, Any]) -> RunResult:
        best = result.get("best_of_evaluations")
        return cls(
            method=result["method"],
            suite=result["suite"],
            tasks=tuple(result.get("tasks", ())),
            data=DataInfo.from_json(result["data"]),
            scale=result["scale"],
            seed=int(result["seed"]),
            steps=int(result["steps"]) if result.get("steps") is not None else None,
            success_rate=result["success_rate"],
            mean_return=result.get("mean_return"),
            per_task={task: TaskScore.from_json(r) for task, r in result["per_task"].items()},
            protocol=Protocol.from_json(result["protocol"]),
            num_parameters=int(result["num_parameters"]),
            wall_time_s=WallTime.from_json(result["wall_time_s"]),
            test_tasks=tuple(result["test_tasks"]) if "test_tasks" in result else None,
            dataset_hash=result.get("dataset_hash"),
            dataset_verified=result.get("dataset_verified"),
            dataset_store=result.get("dataset_store"),
            non_default=result.get("non_default") or {},
            best_of_evaluations=BestOf.from_json(best) if best else None,
            unseen_tasks=result.get("unseen_tasks"),
            device=result.get("device"),
            torch_threads=result.get("torch_threads"),
            versions=result.get("versions") or {},
            git=result.get("git") or {},
            run_dir=result.get("run_dir"),
            launch=result.get("launch"),
            extra={key: value for key, value in result.items() if key not in _KNOWN},
        )

    def to_json(self) -> dict[str, Any]:
        """The result.json object, in the runner's key order."""
        best = self.best_of_evaluations
        parts: list[tuple[str, Any]] = [
            ("method", self.method),
            ("suite", self.suite),
            ("tasks", list(self.tasks)),
            ("test_tasks", None if self.test_tasks is None else list(self.test_tasks)),
            ("data", dict(self.data.record)),
            ("dataset_hash", self.dataset_hash),
            ("dataset_verified", self.dataset_verified),
            ("dataset_store", _plain(self.dataset_store)),
            ("scale", self.scale),
            ("seed", self.seed),
            ("non_default", dict(self.non_default)),
            ("steps", self.steps),
            ("success_rate", self.success_rate),
            ("mean_return", self.mean_return),
            ("per_task", {task: dict(s.record) for task, s in self.per_task.items()}),
            ("protocol", dict(self.protocol.record)),
            ("best_of_evaluations", _plain(best.record) if best else None),
            ("unseen_tasks", _plain(self.unseen_tasks)),
            ("num_parameters", self.num_parameters),
            ("device", self.device),
            ("torch_threads", self.torch_threads),
            ("wall_time_s", self.wall_time_s.to_json()),
            ("versions", dict(self.versions)),
            ("git", dict(self.git)),
            ("run_dir", self.run_dir),
            ("launch", _plain(self.launch)),
        ]
        optional = {"test_tasks", "dataset_hash", "dataset_verified", "dataset_store", "steps",
                    "best_of_evaluations", "unseen_tasks", "device", "torch_threads", "run_dir",
                    "launch"}  # fmt: skip
        written = {k: v for k, v in parts if not (k in optional and v is None)}
        # success_rate is written even when None (a meta-RL run has none); mean_return only
        # where the result has one
        if self.mean_return is None:
            written.pop("mean_return")
        return {**written, **self.extra}


_KNOWN = frozenset(RunResult.__dataclass_fields__) - {"extra"}


def _plain(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else dict(value)


def read_result(path: Path) -> RunResult:
    """The result in `path` (a result.json, or a run directory holding one); a file that cannot
    be read or is not a run's result is a UserError naming it and why."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: cannot read it ({error})") from None
    try:
        return RunResult.from_json(payload)
    except DamagedResult as damage:
        raise UserError(f"{path}: not a run's result ({damage})") from None

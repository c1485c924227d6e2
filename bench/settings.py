"""The harness config, typed and checked once before anything is made.

`load_settings(overrides)` composes the Hydra config (bench.config), checks every value, range
and relation a run depends on (the method's own options through its config dataclass), the
device, and that the run and data folders can be written, and returns one frozen `Settings`
that the runner and the launcher are handed. A bad value is a one-line UserError naming the
value and what is valid; nothing has been written when it is raised.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.config import Composed, compose_run
from bench.data.locations import dataset_path, generator_choice
from bench.data.paths import check_plain_name
from bench.data.prepare import check_dataset
from bench.data.task_cache import training_episodes
from bench.errors import UserError, count_problem
from bench.identity import non_default_values, run_directory
from bench.output_paths import check_writable
from bench.suites import Suite, get_suite
from bench.tracking import check_loggers

if TYPE_CHECKING:
    from bench.registry import MethodConfig, MethodSpec


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    log_every: int
    checkpoint_every: int
    eval_every: int  # 0: no periodic evaluation


@dataclass(frozen=True)
class EvalSettings:
    episodes: int
    goal_pool_seed_offset: int


@dataclass(frozen=True)
class DataSettings:
    """The data section, with `~` in `root` and `path` expanded."""

    name: str  # the run directory's data component (data=near_optimal | sub_optimal)
    root: str  # generated stores: <root>/<prefix>-ep<episodes_per_task>
    path: str | None  # an explicit store, instead of a generated one
    generator: str  # Meta-World's: replay | noisy_expert (bench.data.locations.STORE_PREFIXES)
    fraction: float  # of each task's episodes that a run reads
    episodes_per_task: int
    prompt_episodes: int
    seed: int
    goal_pool_seed: int
    workers: int
    expert_steps: int  # meta-RL families: SAC environment steps per expert

    @classmethod
    def from_section(cls, data: Mapping[str, Any]) -> DataSettings:
        """From a section `_check_data_values` has passed. Values keep the type they were given
        (`data.fraction=1` stays an int), so what a run records is what it recorded before."""
        expanded = _expand_paths(data)
        return cls(
            name=expanded["name"],
            root=expanded["root"],
            path=expanded.get("path") or None,
            generator=generator_choice(expanded),
            fraction=expanded["fraction"],
            **{key: int(expanded[key]) for key in _DATA_COUNTS},
        )

    def section(self) -> dict[str, Any]:
        """As a mapping, the shape bench.data's functions (dataset_path, open_dataset) and a
        Slurm generation job's pickled argument take."""
        return dataclasses.asdict(self)


_DATA_COUNTS = ("episodes_per_task", "prompt_episodes", "seed", "goal_pool_seed", "workers",
                "expert_steps")  # fmt: skip


@dataclass(frozen=True)
class LauncherSettings:
    name: str  # local | slurm
    options: dict[str, Any]  # the rest of its section (configs/launcher/<name>.yaml)

    @classmethod
    def from_section(cls, launcher: Mapping[str, Any]) -> LauncherSettings:
        options = {key: value for key, value in launcher.items() if key != "name"}
        if launcher["name"] == "slurm":  # its values checked with the rest, before any plan
            from bench.slurm import SlurmOptions

            SlurmOptions.from_config(options)
        return cls(str(launcher["name"]), options)

    @property
    def local(self) -> bool:
        """The runs run on this machine (not on Slurm nodes), so its devices and speed count."""
        return self.name != "slurm"


@dataclass(frozen=True)
class RunSettings:
    root: Path  # `~` expanded
    dir: Path | None  # an explicit run directory, instead of one under `root`
    restart: bool  # discard what the run directory holds and start over

    @classmethod
    def from_section(cls, run: Mapping[str, Any]) -> RunSettings:
        folder = run.get("dir")
        return cls(Path(run["root"]).expanduser(), Path(folder) if folder else None,
                   bool(run.get("restart", False)))  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """One run, as every module below the CLI sees it. `config` is the resolved dict it was
    made from, saved as the run's config.yaml."""

    config: dict[str, Any]
    overrides: tuple[str, ...]
    run_dir: Path
    suite: Suite
    method_name: str
    method_config: MethodConfig  # the method's own frozen dataclass
    seed: int
    device: str
    precision: str
    threads: int | None
    interop_threads: int | None
    progress: bool
    scale: str
    train: TrainSettings
    eval: EvalSettings
    data: DataSettings
    launcher: LauncherSettings
    run: RunSettings
    non_default: dict[str, Any]  # what the run directory's extra component stands for
    loggers: tuple[str, ...] = ()  # experiment trackers fed from metrics.jsonl (bench.tracking)


def load_settings(overrides: Sequence[str]) -> Settings:
    """Compose, check and type the config of one run (a sweep's job is one run)."""
    return check(compose_run(overrides))


def check(composed: Composed) -> Settings:
    from bench.registry import get_method, make_config

    config = composed.config
    suite = get_suite(config["tasks"]["name"])
    train = config["train"]
    _check_data_values(config["data"])
    data = DataSettings.from_section(config["data"])
    # A folder of the run directory (bench.identity); the suite and method are known names.
    check_plain_name("data.name", data.name)
    launcher = LauncherSettings.from_section(config["launcher"])
    device, threads, interop = _check_run_values(config, launcher)
    loggers = check_loggers(config["logger"])
    spec = get_method(config["method"]["name"])
    precision = str(config["precision"])
    check_precision(precision, spec.name, spec.config_cls)
    method_config = make_config(spec, {k: v for k, v in config["method"].items() if k != "name"})
    _check_unseen_tasks(suite, spec)
    _check_prompts(suite, spec, data)
    method_config.check_suite(suite)
    run = RunSettings.from_section(config["run"])
    run_dir = run_directory(composed)
    check_writable(run_dir, "run.root" if run.dir is None else "run.dir")
    _check_data_location(data, suite)
    non_default = non_default_values(composed)
    if data.path and "data.generator" in non_default:  # it would only rename the run directory
        raise UserError(
            f"data.generator={non_default['data.generator']} chooses how a store is generated; "
            f"data.path={data.path} is a store already: drop data.generator"
        )
    return Settings(
        config=config,
        overrides=composed.overrides,
        run_dir=run_dir,
        suite=suite,
        method_name=spec.name,
        method_config=method_config,
        seed=int(config["seed"]),
        device=device,
        precision=precision,
        threads=threads,
        interop_threads=interop,
        progress=bool(config["progress"]),
        scale=str(config["scale"]["name"]),
        train=TrainSettings(**{k: int(v) for k, v in train.items()}),
        eval=EvalSettings(**{k: int(v) for k, v in config["eval"].items()}),
        data=data,
        launcher=launcher,
        run=run,
        non_default=non_default,
        loggers=loggers,
    )


def load_data_settings(
    overrides: Sequence[str],
) -> tuple[Suite, DataSettings, bool, LauncherSettings]:
    """(suite, data section, progress, launcher) for `bench data generate`, checked like a
    run's."""
    config = compose_run(overrides).config
    suite = get_suite(config["tasks"]["name"])
    if config["data"].get("path"):
        raise UserError("data generate writes a generated store; drop data.path")
    _check_data_values(config["data"], training=False)
    data = DataSettings.from_section(config["data"])
    launcher = LauncherSettings.from_section(config["launcher"])
    _check_run_values(config, launcher)  # unused here, but a bad value is refused anywhere
    _check_data_location(data, suite)
    return suite, data, bool(config["progress"]), launcher


# Longer than any run (1000x Table 6's 1e6 steps); beyond it, step arithmetic leaves int64.
MAX_TRAIN_STEPS = 10**9


def _check_run_values(
    config: Mapping[str, Any], launcher: LauncherSettings
) -> tuple[str, int | None, int | None]:
    """The run's own values outside its method and data: (device, threads, interop threads)."""
    train = config["train"]
    _at_least(train, "train", steps=1, log_every=1, checkpoint_every=1, eval_every=0)
    if train["steps"] > MAX_TRAIN_STEPS:
        raise UserError(f"train.steps must be <= {MAX_TRAIN_STEPS:_}, got {train['steps']!r}")
    _at_least(config["eval"], "eval", episodes=1, goal_pool_seed_offset=0)
    if int(config["seed"]) < 0:
        raise UserError(f"seed must be >= 0, got {config['seed']!r}")
    threads = _optional_count(config, "threads")
    interop = _optional_count(config, "interop_threads")
    # A login node often has no GPU: a Slurm job checks that its node has the device it asks for.
    return check_device(str(config["device"]), here=launcher.local), threads, interop


def _check_data_values(data: Mapping[str, Any], training: bool = True) -> None:
    _at_least(data, "data", episodes_per_task=1, prompt_episodes=0, seed=0, goal_pool_seed=0,
              workers=1, expert_steps=1)  # fmt: skip
    generator_choice(data)  # the meta-RL suites ignore it, but a typo is a typo anywhere
    fraction = data["fraction"]
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"data.fraction must be in (0, 1], got {fraction!r}")
    if training and not data.get("path"):  # a store may be made smaller than a run can use
        _check_generated_episodes(data)


def _at_least(section: Mapping[str, Any], name: str, **minimums: int) -> None:
    for key, minimum in minimums.items():
        problem = count_problem(f"{name}.{key}", section[key], minimum)
        if problem:
            raise UserError(problem)


def _optional_count(config: Mapping[str, Any], key: str) -> int | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{key} must be null (torch's default) or an integer >= 1, got {value!r}")
    return value


def _check_generated_episodes(data: Mapping[str, Any]) -> None:
    """A generated store must leave every task at least one training episode after prompts."""
    prompts = int(data["prompt_episodes"])
    trained = training_episodes(int(data["episodes_per_task"]), data["fraction"], prompts)
    used = trained + prompts  # rounded as the split rounds it
    if trained < 1:
        raise UserError(
            f"data.episodes_per_task={data['episodes_per_task']} with data.fraction="
            f"{data['fraction']} uses {used} episode(s) per task, and data.prompt_episodes="
            f"{data['prompt_episodes']} of them are prompts: no training episode is left"
        )


PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str, method: str, config_cls: type[MethodConfig]) -> None:
    """`precision` is valid and the method has it (only the DT methods have bf16)."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision not in config_cls.precisions:
        raise UserError(
            f"precision={precision} is not implemented for method={method}, which trains in "
            f"{' or '.join(config_cls.precisions)} (drop precision={precision})"
        )


def check_device(device: str, here: bool = True) -> str:
    """`cpu`, `cuda`, `cuda:<index>` or `mps`, and (with `here`) only when this machine's torch
    can use it."""
    import torch

    kind, _, index = device.partition(":")
    valid = ["cpu", "cuda", "cuda:<index>", "mps"]
    if kind not in ("cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise UserError(f"unknown device {device!r}; choose one of: {', '.join(valid)}")
    if not here:
        return device
    if kind == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "no visible GPU"
            raise UserError(
                f"device={device} is not available (torch {torch.__version__}: {build}); "
                "use device=cpu"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise UserError(
                f"device={device} does not exist; this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device={device} is not available on this machine; use device=cpu")
    return device


def _expand_paths(data: Mapping[str, Any]) -> dict[str, Any]:
    """The data section with `~` in `root` and `path` expanded."""
    expanded = dict(data)
    for key in ("root", "path"):
        if expanded.get(key):
            expanded[key] = str(Path(expanded[key]).expanduser())
    return expanded


def _check_unseen_tasks(suite: Suite, spec: MethodSpec) -> None:
    """A method must have a way to act on a suite's unseen test tasks: one that states its
    rule for them (`unseen_task_rule`, written into the result)."""
    from bench.registry import get_method, registered

    if not suite.unseen_tasks or spec.config_cls.acts_on_unseen_tasks:
        return
    able = [name for name in registered() if get_method(name).config_cls.acts_on_unseen_tasks]
    raise UserError(
        f"method {spec.name!r} cannot act on the unseen test tasks of {suite.name} (it "
        f"knows tasks only by their training id); these can: {', '.join(able)}"
    )


def _check_prompts(suite: Suite, spec: MethodSpec, data: DataSettings) -> None:
    """A method that reads prompt episodes (in training, or to act on unseen tasks) has some."""
    reads = spec.config_cls.reads_prompts or (
        suite.unseen_tasks and spec.config_cls.acts_on_unseen_tasks
    )
    if reads and data.prompt_episodes < 1:
        where = "" if spec.config_cls.reads_prompts else f" to act on {suite.name}'s unseen tasks"
        raise UserError(
            f"data.prompt_episodes={data.prompt_episodes}: method {spec.name!r} reads each "
            f"task's prompt episodes{where}; set data.prompt_episodes >= 1 (default 2)"
        )


def _check_data_location(data: DataSettings, suite: Suite) -> None:
    if data.path:
        if Path(data.path).exists() and not Path(data.path).is_dir():
            raise UserError(f"data.path={data.path} is a file; it must be a dataset folder")
        check_dataset(data.section(), suite)
        return
    root = Path(data.root)
    if root.exists() and not root.is_dir():
        raise UserError(f"data.root={data.root} is a file; it must be a folder")
    store = dataset_path(data.section(), suite)
    if not (store / "manifest.json").is_file():  # to be generated (a finished one may be read-only)
        check_writable(store, "data.root")
    elif suite.benchmark.store_prefix is None:  # a Meta-World store: its generator's settings
        from bench.data.generate import check_store_settings  # (SAC stores: bench.data.sac_experts)

        check_store_settings(
            store, data.generator, data.episodes_per_task, data.seed, data.goal_pool_seed
        )

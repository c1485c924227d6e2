"""Name -> method class. A method registers itself with `@register("name", config=Config)`.

Its config is a frozen dataclass deriving from `MethodConfig`: the one home of its options'
defaults (the paper's), their checks and its abilities (class attributes, not probing).
`bench.method_section` fills a run's `method:` section from it; the YAML of configs/method/
only selects it by name.

The method contract (docs/architecture.md, "Adding a method"): a method is built as
`cls(config, suite, data, seed, device)`,
trains with `train_step(step) -> dict of floats` (and `pop_events()` for richer log events),
acts through `policy(task_id)` for n parallel episodes of one task, and resumes bit-for-bit
from `state_dict()` / `load_state_dict()`.
The harness never looks inside a method.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch

from bench.data.samplers import OfflineData
from bench.errors import UserError, leading_zero_hint, unknown_choice
from bench.plugins import VARIABLE, plugin_folders, plugin_method_yaml
from bench.policy import Policy
from bench.suites import Suite

if TYPE_CHECKING:
    from bench.data.store import DatasetStore
    from bench.settings import Settings


class Method(Protocol):
    def train_step(self, step: int) -> dict[str, float]: ...

    def pop_events(self) -> list[dict[str, Any]]:
        """Structured events since the last call (e.g. HarmoDT's mask updates) for metrics.jsonl."""

    def policy(self, task_id: int) -> Policy: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def num_parameters(self) -> int: ...


class ActsOnUnseenTasks(Protocol):
    """A method whose config has `acts_on_unseen_tasks`: it states how it acts on such a task."""

    @property
    def unseen_task_rule(self) -> str: ...


def follows(key: str, default: Any, *, settable: bool = True) -> Any:
    """A config field whose value in a run is the run's `key` (`follows("train.steps", 10**6)`:
    E in HarmoDT's Eq. 12 is the run's length) unless the field itself is set; `default` is
    its value where a config is built outside a run. `settable=False`: the field is only ever
    that key's value (M3DT's stages split the steps the run trains), and setting it is an error
    naming the key to set instead."""
    return field(default=default, metadata={"follows": key, "settable": settable})


def added_later(default: Any, *, earlier: Any) -> Any:
    """A config field added after runs were saved without it: `earlier` is the value those
    runs ran with, which a saved config lacking the field stands for when a run directory is
    claimed or a run rebuilt (`earlier_values`). Without it, a saved run would pass for one of
    today's default, as M3DT's sweep runs (router drawn `normal`) would for `router_init`'s
    `official`."""
    return field(default=default, metadata={"earlier": earlier})


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method's config. Its fields are the method's options (`method.<field>`),
    with the paper's values as defaults; scale and size presets change them by family."""

    # The presets' section (`dt:` in configs/scale/*.yaml) that sets this class's fields for
    # every method deriving from it: a family's preset values are written once, not per method.
    preset_section: ClassVar[str | None] = None
    # Precisions the method trains in (the top-level `precision=`); fp32 is what results use.
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    # Whether the method can act on a task it never trained on (the unseen-task suites). One
    # that can states how in its `unseen_task_rule`, which the result records.
    acts_on_unseen_tasks: ClassVar[bool] = False
    # Whether training reads each task's prompt episodes (`data.prompt_episodes`, >= 1 then).
    # A method acting on unseen tasks reads them there too: the unseen task's own, or the
    # nearest training task's by prompt.
    reads_prompts: ClassVar[bool] = False
    # Fields beyond the model's shape and batch (bench.plan_rates.speed_key) that a training
    # step's cost depends on: a plan reuses a finished run's speed only where they match.
    speed_fields: ClassVar[tuple[str, ...]] = ()

    def check_suite(self, suite: Suite) -> None:
        """Raise a UserError where these values cannot run on `suite` (before anything is made)."""

    def run_notes(self, suite: Suite) -> list[str]:
        """What a run of these values on `suite` says as it starts (`note: ...`, a line each):
        a value that runs as another (M3DT's num_experts above the task count), so that a
        sweep over it does not silently make the same run twice."""
        return []

    def training_stages(self, total_steps: int) -> tuple[TrainingStage, ...]:
        """The stretches of a run of `total_steps` whose steps cost alike: one for most
        methods, M3DT's three. The plan and `bench perf train` time each and weigh them by
        their length."""
        return (TrainingStage("train", 0, total_steps),)

    def tasks_per_step(self, num_tasks: int) -> int:
        """How many tasks' batches one step trains on at most (of a suite of `num_tasks`): a
        step's cost grows with it, so a timing build needs that many tasks, and no more."""
        return 1


@dataclass(frozen=True)
class TrainingStage:
    """Steps `first_step` .. `first_step + steps - 1` of a run, named as its events name them."""

    name: str
    first_step: int
    steps: int


@dataclass(frozen=True)
class MethodSpec:
    name: str
    cls: type
    config_cls: type[MethodConfig]


_REGISTRY: dict[str, MethodSpec] = {}


def register(name: str, config: type) -> Callable[[type], type]:
    """Class decorator adding a method under `name` with its typed config dataclass."""

    def add(cls: type) -> type:
        if name in _REGISTRY:
            raise RuntimeError(f"method {name!r} registered twice")
        if not (isinstance(config, type) and issubclass(config, MethodConfig)):
            raise TypeError(f"method {name!r}: its config {config!r} must derive from MethodConfig")
        _REGISTRY[name] = MethodSpec(name, cls, config)
        return cls

    return add


def _load_methods() -> None:
    importlib.import_module("methods")
    for folder in plugin_folders():
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
        for path in sorted(folder.glob("*.py")):
            _import_plugin(path)


def _import_plugin(path: Path) -> None:
    """Import a plugin folder's module by its file name. The folder comes last on sys.path, so a
    module of that name found first (the standard library's statistics, an installed package)
    would be imported in its place and the plugin's method would silently not exist: refused."""
    name = path.stem
    if not name.isidentifier() or name == "__main__":
        raise UserError(
            f"{VARIABLE}: {path}: a plugin module's name must be a Python identifier other "
            "than __main__ (letters, digits and _): rename the file"
        )
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise UserError(f"{VARIABLE}: {path} cannot be imported as {name!r}")
    if found.has_location and found.origin is not None:
        if Path(found.origin).resolve() == path.resolve():
            importlib.import_module(name)
            return
        other = f"the module {name!r} at {found.origin}"
    else:
        other = f"Python's {found.origin or 'namespace'} module {name!r}"
    raise UserError(
        f"{VARIABLE}: {path} is named like {other}, which Python imports instead: rename the file"
    )


def config_classes() -> list[type[MethodConfig]]:
    """Every registered method's config class."""
    _load_methods()
    return [spec.config_cls for spec in _REGISTRY.values()]


def registered() -> list[str]:
    _load_methods()
    return sorted(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    _load_methods()
    if name not in _REGISTRY:
        orphan = plugin_method_yaml(name)
        if orphan is not None:
            raise UserError(
                f"method {name!r}: {orphan} selects it, but no module in the {VARIABLE} folders "
                f"registers it (@register({name!r}, config=...) in a .py beside configs/); "
                f"registered: {', '.join(sorted(_REGISTRY))}"
            )
        raise unknown_choice("method", name, _REGISTRY)
    return _REGISTRY[name]


def earlier_values(saved_config: Mapping[str, Any]) -> dict[str, Any]:
    """What a run's saved resolved config ran with in the fields it lacks, flat
    (`{"method.router_init": "normal"}`): its method's `added_later` fields' `earlier` values.
    Empty for a method no longer registered (another difference names it), and for a config
    of another shape (the comparison names the damage)."""
    method = saved_config.get("method") if isinstance(saved_config, Mapping) else None
    if not isinstance(method, Mapping):
        return {}
    _load_methods()
    spec = _REGISTRY.get(str(method.get("name")))
    if spec is None:
        return {}
    return {
        f"method.{f.name}": f.metadata["earlier"]
        for f in dataclasses.fields(spec.config_cls)
        if "earlier" in f.metadata and f.name not in method
    }


def make_config(spec: MethodSpec, values: Mapping[str, Any]) -> MethodConfig:
    """The method's typed config from plain values; an unknown field is a UserError."""
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    unknown = sorted(set(values) - fields - {"name"})
    if unknown:
        raise UserError(
            f"unknown option(s) {', '.join(unknown)} for method {spec.name!r}; "
            f"its options are: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(spec.config_cls)
    for key, value in values.items():
        if key in fields:
            check_field(f"method.{key}", value, hints[key])
    return spec.config_cls(**{k: v for k, v in values.items() if k in fields})


def check_field(key: str, value: Any, annotation: Any) -> None:
    """Literal choices and plain scalar types (or None where a field is optional) are checked,
    so a typo never runs silently; `key` is the option as the user types it (`method.sparsity`)."""
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    if optional and type(None) in typing.get_args(annotation):
        if value is None:
            return
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is typing.Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise unknown_choice(f"value for {key}", value, map(str, choices))
        return
    if annotation is bool and not isinstance(value, bool):
        raise UserError(f"{key} must be true or false, got {value!r}")
    if annotation is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise UserError(f"{key} must be an integer, got {value!r}{leading_zero_hint(value)}")
    if annotation is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise UserError(f"{key} must be a number, got {value!r}")
    if annotation is float and not math.isfinite(value):  # nan passes every range check
        raise UserError(f"{key} must be a finite number, got {value!r}")


def task_masks(method_state: Mapping[str, Any]) -> torch.Tensor | None:
    """The (tasks, weights) bool task masks a method's state_dict holds, for `bench analyze`;
    None when it holds none. A method with masks decodes its own state
    (`task_masks_from_state`): the harness never reads inside it."""
    _load_methods()
    for spec in _REGISTRY.values():
        decode = getattr(spec.cls, "task_masks_from_state", None)
        masks = decode(method_state) if decode is not None else None
        if masks is not None:
            return masks
    return None


def build_for_run(
    settings: Settings, store: DatasetStore, suite: Suite | None = None
) -> tuple[OfflineData, Method]:
    """A run's data and method from its settings, on `store`: the one way the runner, the
    plan, `bench perf` and `bench analyze` build them. `suite` stands in for the run's where a
    timing build's synthetic store holds only some tasks (the plan: the tasks of one step;
    `bench perf`: the training tasks, no unseen ones)."""
    suite = settings.suite if suite is None else suite
    data_config = settings.data
    data = OfflineData(store, suite.tasks, data_config.fraction, data_config.prompt_episodes,
                       unseen_tasks=suite.unseen_tasks)  # fmt: skip
    method = build_method(settings.method_name, settings.method_config, suite, data,
                          settings.seed, settings.device)  # fmt: skip
    return data, method


def build_method(
    name: str,
    config: MethodConfig,
    suite: Suite,
    data: OfflineData,
    seed: int,
    device: str = "cpu",
) -> Method:
    """Method `name` from its typed config (`make_config`); a run's: `build_for_run`."""
    return get_method(name).cls(config, suite, data, seed, torch.device(device))

"""Hydra composition with errors a user can act on.

CLI overrides -> Hydra composes configs/ -> one resolved plain dict, which is what a run saves
and what every module receives. Bad group choices and unknown keys are caught here and turned
into one-line UserErrors listing the valid choices.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench.errors import UserError, did_you_mean, leading_zero_hint, unknown_choice
from bench.plugins import plugin_config_dirs

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"
GROUPS = ("method", "tasks", "data", "scale", "size", "launcher")
# Keys whose `key=a,b` is a list, not a sweep: they never change a result, so a sweep over
# them would make the same run twice. `logger=tensorboard,wandb` means both loggers, with or
# without -m, as `logger=[tensorboard,wandb]` does.
LIST_KEYS = ("logger",)


def group_choices(group: str) -> list[str]:
    """The selectable configs of a group, plugins' included (a file starting with `_` is a
    shared fragment, not a choice)."""
    folders = [CONFIG_DIR, *plugin_config_dirs()]
    names = {p.stem for folder in folders for p in (folder / group).glob("*.yaml")}
    return sorted(name for name in names if not name.startswith("_"))


def group_file(group: str, name: str) -> Path:
    """The YAML of choice `name` of `group`: the repository's, else a plugin's."""
    for folder in (CONFIG_DIR, *plugin_config_dirs()):
        path = folder / group / f"{name}.yaml"
        if path.is_file():
            return path
    raise unknown_choice(group, name, group_choices(group))


def _search_path() -> list[str]:
    """The Hydra override adding the plugins' config folders (none without plugins)."""
    folders = plugin_config_dirs()
    if not folders:
        return []
    quoted = ",".join(hydra_quoted(f"file://{folder}") for folder in folders)
    return [f"hydra.searchpath=[{quoted}]"]


def _input_line(override: Override) -> str:
    """The override as typed: the parser records it on every override it makes."""
    assert override.input_line is not None
    return override.input_line


def _keys(node: DictConfig) -> Iterable[str]:
    """`node`'s keys, which Hydra reads from YAML mappings as strings (OmegaConf's type for them
    also allows ints, enums, bytes...)."""
    return cast("Iterable[str]", node.keys())


def parse_overrides(overrides: Sequence[str]) -> list[Override]:
    parser = OverridesParser.create()
    parsed = []
    for override in overrides:  # one at a time, so the error can name the one that failed
        try:
            parsed.extend(parser.parse_overrides([override]))
        except HydraException:
            raise UserError(_unparsable(override)) from None
    return parsed


def _lists_not_sweeps(overrides: Sequence[str]) -> list[str]:
    """`overrides` with each `key=a,b` of a LIST_KEYS key spelled as the list `key=[a,b]`."""
    spelled = []
    for override, parsed in zip(overrides, parse_overrides(overrides), strict=True):
        if parsed.key_or_group in LIST_KEYS and parsed.is_sweep_override():
            values = ",".join(parsed.sweep_string_iterator())
            override = f"{parsed.get_key_element()}=[{values}]"
        spelled.append(override)
    return spelled


def hydra_quoted(value: str) -> str:
    """`value` as a double-quoted Hydra string, which its grammar reads back unchanged whatever
    the characters (unquoted, it refuses non-ASCII letters, spaces, commas...): a quote is
    escaped, and so is each backslash before a quote or at the end. Double quotes, so that a
    shell's single quotes can hold the whole `key="value"`."""
    escaped = re.sub(r'\\+(?="|$)', lambda run: run.group(0) * 2, value)
    return '"' + escaped.replace('"', '\\"') + '"'


def as_override(key: str, value: Any) -> str:
    """`key=value` as Hydra reads it back: a string quoted, anything else as JSON writes it
    (null, true, 0.0001)."""
    return f"{key}={hydra_quoted(value) if isinstance(value, str) else json.dumps(value)}"


def _unparsable(override: str) -> str:
    key, _, value = override.partition("=")
    hint = "use key=value, key=a,b for a sweep (with -m)"
    if value and not (value[0] in "'\"" and value[-1] == value[0]):
        hint = f"quote the value as {key}='{value}'"
        if value.startswith("~"):
            hint += " or spell out the home folder"
    return f"cannot parse override {override!r} (Hydra override grammar): {hint}"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _check_groups(parsed: Sequence[Override]) -> None:
    for override in parsed:
        key = override.key_or_group
        if key not in GROUPS:
            continue
        values = (
            list(override.sweep_string_iterator())
            if override.is_sweep_override()
            else [override.value()]
        )
        for value in values:
            if value not in group_choices(key):
                kind = {"tasks": "task suite", "scale": "scale preset", "size": "model size"}.get(
                    key, key
                )
                raise unknown_choice(kind, value, group_choices(key))


def _check_keys(base: DictConfig, parsed: Sequence[Override]) -> None:
    """Each `a.b=value` override must set a value that exists. The config is closed (every key
    is read by a typed settings class), so Hydra's `+a.b=` may not add a key (`compose_run`
    refuses `~a.b`), and a section is set key by key."""
    for override in parsed:
        key = override.key_or_group
        if key in GROUPS or _adds_to_open_section(base, override):
            continue
        node: Any = base
        path = key.split(".")
        for depth, part in enumerate(path):
            if not isinstance(node, DictConfig) or part not in node:
                where = ".".join(path[:depth]) or "the top level"
                keys = sorted(_keys(node)) if isinstance(node, DictConfig) else []
                hint = did_you_mean(part, keys, prefix="".join(f"{p}." for p in path[:depth]))
                raise UserError(
                    f"unknown config key {key!r}{hint}; valid keys at {where}: {', '.join(keys)}"
                )
            node = node[part]
        if isinstance(node, DictConfig):
            valid = ", ".join(sorted(_keys(node)))
            raise UserError(f"{key} is a section, not a value; set its keys ({key}.<key>=): "
                            f"{valid}")  # fmt: skip
        _check_type(key, node, override)


# Sections whose keys are the user's, not ours: `+launcher.sbatch.constraint=a100` adds an
# `#SBATCH --constraint=a100` line (bench.slurm checks the values).
OPEN_SECTIONS = ("launcher.sbatch",)


def _adds_to_open_section(base: DictConfig, override: Override) -> bool:
    """Whether `override` sets a key of an open section the chosen groups have; a new key
    needs Hydra's `+`, which the error says."""
    key = override.key_or_group
    section = next((s for s in OPEN_SECTIONS if key.startswith(f"{s}.")), None)
    if section is None or OmegaConf.select(base, section) is None:
        return False
    if OmegaConf.select(base, key) is None and not override.is_add():
        raise UserError(f"{key} is not in {section} yet: add it with +{key}=")
    return True


# Keys that name a file or folder, and whether they may be null (unset). Hydra reads
# `data.path=2024` as a number and `data.root=null` as None: neither is a path.
PATH_KEYS = {"data.root": False, "run.root": False, "data.path": True, "run.dir": True,
             "launcher.python": True}  # fmt: skip


def _check_type(key: str, current: Any, override: Override) -> None:
    """A number or flag stays a number or flag: `seed=abc` is an error, not a new run; a path
    stays text."""
    if override.is_sweep_override():
        return
    if key in PATH_KEYS:
        _check_path(key, override)
        return
    if not isinstance(current, (bool, int, float)):
        return
    value = override.value()
    expected = {bool: "true or false", int: "an integer", float: "a number"}[type(current)]
    fits = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
    }[type(current)]
    if not fits:  # the value as typed: `1e3`, not the 1000.0 Hydra parsed it into
        typed = (override.input_line or "").partition("=")[2] or str(value)
        raise UserError(f"{key} must be {expected}, got {typed!r}{leading_zero_hint(typed)}")


def _check_path(key: str, override: Override) -> None:
    value = override.value()
    if isinstance(value, str) or (value is None and PATH_KEYS[key]):
        return
    typed = (override.input_line or "").partition("=")[2] or str(value)
    if value is None:
        raise UserError(f"{key} must be a folder path, got {typed!r}")
    kind = {bool: "flag", int: "number", float: "number", list: "list"}.get(type(value), "value")
    raise UserError(
        f"{key} must be a path, got {typed!r}, which Hydra reads as a {kind}; quote it to "
        f"mean a name: {key}='{typed}'"
    )


@dataclass(frozen=True)
class Composed:
    """One run's resolved config, and what it would be without its key overrides.

    `defaults` is the config of the same groups (method, tasks, data, scale, launcher) with no
    `key=value` override; `sources` maps each flat key whose default is an interpolation
    (`method.total_steps: ${train.steps}`) to the key it copies. Run identity (bench.identity)
    names a run directory by the differences between the two.
    """

    config: dict[str, Any]
    defaults: dict[str, Any]
    sources: dict[str, str]
    overrides: tuple[str, ...]


def compose_run(overrides: Sequence[str], multirun: bool = False) -> Composed:
    """The resolved config for one run's overrides, with its defaults (see `Composed`)."""
    overrides = _lists_not_sweeps(overrides)
    parsed = parse_overrides(overrides)
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    if sweeps and not multirun:
        raise UserError(f"override {sweeps[0]!r} is a sweep; run sweeps with `bench run -m ...`")
    for override in parsed:  # every setting, group and option has a default: none is removed
        if override.is_delete():
            key = override.key_or_group
            raise UserError(f"~{key}: {key} has a default and cannot be deleted; set it ({key}=)")
    _check_groups(parsed)
    from bench import method_section  # the registry: only where a run is composed

    families = method_section.family_sections()
    group_overrides = [_input_line(o) for o in parsed if o.key_or_group in GROUPS]
    owned = [o for o in parsed if method_section.is_method_owned(o.key_or_group, families)]
    others = [o for o in parsed if o not in owned]
    search = _search_path()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        base = compose("config", overrides=[*search, *group_overrides])
        _check_keys(base, others)
        method_section.check_owned_overrides(owned, str(base.method.name), families)
        try:
            config = compose("config", overrides=[*search, *map(_input_line, others)])
            method_section.fill(config, families, owned)
            method_section.fill(base, families)
            resolved = cast("dict[str, Any]", OmegaConf.to_container(config, resolve=True))
            defaults = cast("dict[str, Any]", OmegaConf.to_container(base, resolve=True))
        except (HydraException, OmegaConfBaseException) as error:
            raise UserError(_one_line(error)) from None
    assert isinstance(resolved, dict) and isinstance(defaults, dict)
    method_section.drop_family_sections(resolved, families)
    method_section.drop_family_sections(defaults, families)
    _drop_generated_store_path(resolved)
    return Composed(resolved, defaults, _interpolation_sources(base), tuple(overrides))


def _drop_generated_store_path(config: dict[str, Any]) -> None:
    """A `data.path` naming the store the run would generate anyway (result.json records the
    path, so users copy it) is that store, not an imported one: the run gets the same config,
    run directory and report row as without it."""
    data = config["data"]
    if not data.get("path"):
        return
    from bench.data.locations import dataset_path
    from bench.suites import get_suite

    generated = dataset_path({**data, "path": None}, get_suite(config["tasks"]["name"]))
    # Spelled alike, not resolved: a link to the store can be pointed elsewhere later.
    if _spelled_alike(Path(data["path"]), generated):
        data["path"] = None


def _spelled_alike(first: Path, second: Path) -> bool:
    """The same absolute path once `~`, `.`, `..` and trailing slashes are read; links are
    not followed."""
    return os.path.abspath(first.expanduser()) == os.path.abspath(second.expanduser())


def _interpolation_sources(node: DictConfig, prefix: str = "") -> dict[str, str]:
    sources: dict[str, str] = {}
    for key in _keys(node):
        name = f"{prefix}{key}"
        if OmegaConf.is_interpolation(node, key):
            child = node._get_node(key)
            assert child is not None  # is_interpolation found it
            match = re.fullmatch(r"\$\{([\w.]+)\}", str(child._value()))
            if match:
                sources[name] = match.group(1)
        elif isinstance(node[key], DictConfig):
            sources.update(_interpolation_sources(node[key], name + "."))
    return sources


def expand_sweep(overrides: Sequence[str]) -> list[list[str]]:
    """Hydra's basic sweeper: the cartesian product of every `key=a,b,c` in the overrides."""
    overrides = _lists_not_sweeps(overrides)
    parsed = parse_overrides(overrides)
    _check_groups(parsed)
    axes = []
    for override in parsed:
        if override.is_sweep_override():
            key = override.get_key_element()
            axes.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            axes.append([_input_line(override)])
    return [list(job) for job in itertools.product(*axes)]

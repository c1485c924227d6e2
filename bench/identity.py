"""Run identity: one directory per distinct result-affecting config, with a readable path.

    <run.root>/<suite>/<data>/<method>/seed<k>                      the groups' defaults
    <run.root>/<suite>/<data>/<method>/sparsity=0.3,train.steps=2000/seed<k>   anything else

The extra component lists every result-affecting value that differs from the defaults of the
chosen groups, sorted, `name=value`, joined by commas: a method option by its own name, any
other key by its dotted name. It ends in a short hash only where it would be too long or where
a value holds characters a folder name should not (a path). Keys that change how a run is
watched or where it is stored, not what it computes, are not part of it (`NOT_IDENTITY`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.config import Composed

# How a run is watched (`logger`: its trackers) or where its files live; none of them changes
# a number it reports.
# Device and thread count change rounding only: a resume that changes them says so (runner).
# Logging, checkpoint and evaluation cadence draw from no training stream (periodic
# evaluations use their own seeded goals; tests/bench/test_identity.py checks that training is
# bit-identical across them), so they do not split runs or clutter row labels.
NOT_IDENTITY_PREFIXES = ("run.", "launcher.", "scale.description", "size.name")
NOT_IDENTITY = {"seed", "progress", "logger", "threads", "interop_threads", "device",
                "data.workers", "data.root", "train.log_every", "train.checkpoint_every",
                "train.eval_every"}  # fmt: skip
DEFAULT_SIZE = "preset"
MAX_COMPONENT = 64
_SAFE = re.compile(r"[^A-Za-z0-9._+=,-]")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def is_identity_key(key: str) -> bool:
    return key not in NOT_IDENTITY and not key.startswith(NOT_IDENTITY_PREFIXES)


def identity_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flat result-affecting values of a resolved config (what a run directory stands for)."""
    return {k: v for k, v in flatten(config).items() if is_identity_key(k)}


def non_default_values(composed: Composed) -> dict[str, Any]:
    """Result-affecting values that differ from the groups' defaults, by flat key.

    A value that only follows another (method.total_steps copies train.steps) is left out when
    the value it follows is listed itself.
    """
    new, old = identity_values(composed.config), identity_values(composed.defaults)
    keys = sorted(set(new) | set(old))
    changed = {key: new.get(key) for key in keys if new.get(key) != old.get(key)}
    listed = {
        key: value
        for key, value in changed.items()
        if composed.sources.get(key) not in changed
    }
    # A named model size is a group choice, so the defaults hold it too: name it explicitly
    # (other sizes must not share a run directory; the scale preset's own is the default).
    size = composed.config.get("size", {}).get("name", DEFAULT_SIZE)
    if size != DEFAULT_SIZE:
        listed["size"] = size
    return listed


def override_component(changed: Mapping[str, Any]) -> str | None:
    """The readable folder name for `changed` values (None when there are none)."""
    if not changed:
        return None
    parts = sorted(f"{_display_name(k)}={_display_value(v)}" for k, v in changed.items())
    readable = ",".join(parts)
    safe = _SAFE.sub("_", readable)
    if safe == readable and len(readable) <= MAX_COMPONENT:
        return readable
    digest = hashlib.sha256(json.dumps(dict(changed), sort_keys=True).encode()).hexdigest()[:8]
    return f"{safe[: MAX_COMPONENT - 10].rstrip(',_')}-h{digest}"


def run_directory(composed: Composed) -> Path:
    """Where the run of this config lives (`run.dir` when given)."""
    config = composed.config
    run = config["run"]
    if run.get("dir"):
        return Path(run["dir"]).expanduser()
    path = (
        Path(run["root"]).expanduser()
        / config["tasks"]["name"]
        / config["data"]["name"]
        / config["method"]["name"]
    )
    component = override_component(non_default_values(composed))
    if component:
        path = path / component
    return path / f"seed{config['seed']}"


def _display_name(key: str) -> str:
    return key.removeprefix("method.")


def _display_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "-".join(_display_value(item) for item in value)
    return str(value)

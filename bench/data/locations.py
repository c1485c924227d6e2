"""Where a run's data store lives: a config's data section (and its suite) to a folder.

Kept apart from bench.data.prepare, which opens and generates stores, so that a report can
place an unfinished run's store without importing what trains or composes runs
(tests/bench/test_architecture.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import unknown_choice

if TYPE_CHECKING:
    from bench.suites import Suite

# `data.generator`'s default (bench.data.behaviour.BEHAVIOURS holds the choices).
DEFAULT_GENERATOR = "replay"
# The folder of each Meta-World generator's stores: noisy_expert keeps the name its stores had
# before there was a choice, so that they are found (and resumed) where they are.
STORE_PREFIXES = {"replay": "replay", "noisy_expert": "scripted"}


def expert_path(store: Path, family: str, steps: int, seed: int) -> Path:
    """A meta-RL family's SAC expert in `store`, named by what trains it: a generation with
    other `data.expert_steps` or `data.seed` trains its own instead of reusing it."""
    return store / ".experts" / f"{family}-steps{steps}-seed{seed}.pt"


def generator_choice(data: Mapping[str, Any]) -> str:
    """`data.generator` (the default where a section has none), or a one-line UserError naming
    the valid choices."""
    generator = data.get("generator", DEFAULT_GENERATOR)
    if generator not in STORE_PREFIXES:
        raise unknown_choice("data.generator", generator, STORE_PREFIXES)
    return str(generator)


def dataset_path(data: Mapping[str, Any], suite: Suite | None = None) -> Path:
    """`data.path` when given, else the generated store `<root>/<prefix>-ep<episodes_per_task>`:
    the prefix is the suite's benchmark's `store_prefix`, `sac` for the meta-RL families (SAC
    experts, whatever `data.generator` says; one store holds all three, their task names do
    not collide), or where it has none (Meta-World) `replay` or `scripted` by `data.generator`
    (STORE_PREFIXES)."""
    if data.get("path"):
        return Path(data["path"])
    prefix = suite.benchmark.store_prefix if suite is not None else None
    prefix = prefix or STORE_PREFIXES[generator_choice(data)]
    return Path(data["root"]) / f"{prefix}-ep{data['episodes_per_task']}"

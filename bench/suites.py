"""Task suites: named, ordered task lists.

MT50/MT30/MT5 follow the order of the official HarmoDT code's `config/MetaWorld/task.json`
(MT30 and MT5 are its first 30 and 5 entries; this is *not* Meta-World's benchmark order). The
paper used Meta-World v2; the version installable today is v3, so every name is mapped
`<task>-v2 -> <task>-v3` and checked against metaworld's own list at import (docs/fidelity.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import unknown_choice

# The official code's MT50 order, as task stems (no version suffix).
HARMODT_MT50_ORDER: tuple[str, ...] = (
    "basketball", "bin-picking", "button-press-topdown", "button-press",
    "button-press-wall", "coffee-button", "coffee-pull", "coffee-push",
    "dial-turn", "disassemble", "door-close", "door-lock",
    "door-open", "door-unlock", "hand-insert", "drawer-close",
    "drawer-open", "faucet-open", "faucet-close", "handle-press-side",
    "handle-press", "handle-pull-side", "handle-pull", "lever-pull",
    "peg-insert-side", "pick-place-wall", "pick-out-of-hole", "reach",
    "push-back", "push", "pick-place", "plate-slide",
    "plate-slide-side", "plate-slide-back", "plate-slide-back-side", "soccer",
    "push-wall", "shelf-place", "sweep-into", "sweep",
    "window-open", "window-close", "assembly", "button-press-topdown-wall",
    "hammer", "peg-unplug-side", "reach-wall", "stick-push",
    "stick-pull", "box-close",
)  # fmt: skip


def v2_name(task: str) -> str:
    """The paper's (Meta-World v2) name of a v3 task, as used by the published datasets."""
    return task.removesuffix("-v3") + "-v2"


def v3_name(task: str) -> str:
    """The Meta-World v3 name of a v2 (or already v3) task name."""
    return task.removesuffix("-v2").removesuffix("-v3") + "-v3"


@dataclass(frozen=True)
class Suite:
    """An ordered list of tasks; a task's index in `tasks` is its task id everywhere."""

    name: str
    tasks: tuple[str, ...]
    benchmark: str = "metaworld-v3"

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def task_id(self, task: str) -> int:
        return self.tasks.index(task)


def _metaworld_suite(name: str, count: int) -> Suite:
    return Suite(name, tuple(v3_name(stem) for stem in HARMODT_MT50_ORDER[:count]))


SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        _metaworld_suite("mt50", 50),
        _metaworld_suite("mt30", 30),
        _metaworld_suite("mt5", 5),
    )
}


def get_suite(name: str) -> Suite:
    """The suite called `name`, or a UserError listing the suites."""
    if name not in SUITES:
        raise unknown_choice("task suite", name, SUITES)
    return SUITES[name]


def _check_against_metaworld() -> None:
    """Fail loudly at import if a mapped name is not one of metaworld's own v3 environments."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    missing = [t for s in SUITES.values() for t in s.tasks if t not in ALL_V3_ENVIRONMENTS]
    if missing:
        raise RuntimeError(
            f"task names not in this metaworld's ALL_V3_ENVIRONMENTS: {sorted(set(missing))}"
        )


_check_against_metaworld()

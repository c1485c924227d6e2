"""Task suites: named, ordered task lists, with the held-out test tasks of the unseen-task suites.

MT50/MT30/MT5 follow the order of the official HarmoDT code's `config/MetaWorld/task.json`
(MT30 and MT5 are its first 30 and 5 entries; this is *not* Meta-World's benchmark order). The
paper used Meta-World v2; the version installable today is v3, so every name is mapped
`<task>-v2 -> <task>-v3` and checked against metaworld's own list at import (docs/fidelity.md).

cheetah_dir, cheetah_vel and ant_dir are the meta-RL families of the paper's Table 4, with the
train/test splits of its Table 5. Their tasks are named `<family>-<index>` (Prompt-DT's file
names); a run trains on `tasks` and is scored on `test_tasks`. cheetah_dir tests on its two
training tasks (Table 5), so there a test task is a seen task and keeps its own task id.
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


METAWORLD = "metaworld-v3"
META_RL = "mujoco-meta-rl"  # cheetah_dir, cheetah_vel, ant_dir: scored by return on test tasks


@dataclass(frozen=True)
class Suite:
    """An ordered list of training tasks; a task's index in `tasks` is its task id everywhere.

    A suite with `test_tasks` is scored on those instead; a test task that is not a training
    task (an unseen task) gets the id `num_tasks + its position among the unseen tasks`.
    """

    name: str
    tasks: tuple[str, ...]
    benchmark: str = METAWORLD
    test_tasks: tuple[str, ...] = ()

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def unseen_tasks(self) -> tuple[str, ...]:
        return tuple(task for task in self.test_tasks if task not in self.tasks)

    @property
    def evaluation_tasks(self) -> tuple[str, ...]:
        """The tasks a run is scored on: the test split where there is one."""
        return self.test_tasks or self.tasks

    @property
    def data_tasks(self) -> tuple[str, ...]:
        """Every task whose data a run reads (unseen tasks: for their prompts and statistics)."""
        return self.tasks + self.unseen_tasks

    def task_id(self, task: str) -> int:
        return self.data_tasks.index(task)

    def split(self, task: str) -> str:
        """Which split a scored task is from: "train" (seen) or "test" (unseen)."""
        return "test" if task in self.unseen_tasks else "train"


def _metaworld_suite(name: str, count: int) -> Suite:
    return Suite(name, tuple(v3_name(stem) for stem in HARMODT_MT50_ORDER[:count]))


# Table 5 of the paper: the test indexes; every other index of the family is a training task.
META_RL_SPLITS: dict[str, tuple[int, tuple[int, ...]]] = {
    "cheetah_dir": (2, (0, 1)),
    "cheetah_vel": (40, (2, 7, 15, 23, 26)),
    "ant_dir": (50, (6, 17, 23, 30, 41)),
}


def _meta_rl_suite(family: str) -> Suite:
    count, test = META_RL_SPLITS[family]
    # cheetah_dir has 2 tasks and tests on both; the others hold their test tasks out.
    train = range(count) if len(test) == count else [i for i in range(count) if i not in test]
    return Suite(
        family,
        tuple(f"{family}-{i}" for i in train),
        benchmark=META_RL,
        test_tasks=tuple(f"{family}-{i}" for i in test),
    )


SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        _metaworld_suite("mt50", 50),
        _metaworld_suite("mt30", 30),
        _metaworld_suite("mt5", 5),
        *(_meta_rl_suite(family) for family in META_RL_SPLITS),
    )
}


def get_suite(name: str) -> Suite:
    """The suite called `name`, or a UserError listing the suites."""
    if name not in SUITES:
        raise unknown_choice("task suite", name, SUITES)
    return SUITES[name]


def suite_size(name: object) -> int:
    """How many training tasks the suite called `name` has; 0 for a name that is no suite."""
    suite = SUITES.get(str(name))
    return 0 if suite is None else suite.num_tasks


def _check_against_metaworld() -> None:
    """Fail loudly at import if a mapped name is not one of metaworld's own v3 environments."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    metaworld = [s for s in SUITES.values() if s.benchmark == METAWORLD]
    missing = [t for s in metaworld for t in s.tasks if t not in ALL_V3_ENVIRONMENTS]
    if missing:
        raise RuntimeError(
            f"task names not in this metaworld's ALL_V3_ENVIRONMENTS: {sorted(set(missing))}"
        )


_check_against_metaworld()

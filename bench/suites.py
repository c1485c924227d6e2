"""Task suites: named, ordered task lists, with the held-out test tasks of the unseen-task suites.

MT50/MT30/MT5 follow the order of the official HarmoDT code's `config/MetaWorld/task.json`
(MT30 and MT5 are its first 30 and 5 entries; this is *not* Meta-World's benchmark order). The
paper used Meta-World v2; the version installable today is v3, so every name is mapped
`<task>-v2 -> <task>-v3` and checked against metaworld's own list at import (docs/fidelity.md).

cheetah_dir, cheetah_vel and ant_dir are the meta-RL families of the paper's Table 4, with the
train/test splits of its Table 5. Their tasks are named `<family>-<index>` (Prompt-DT's file
names); a run trains on `tasks` and is scored on `test_tasks`. cheetah_dir tests on its two
training tasks (Table 5), so there a test task is a seen task and keeps its own task id.

Every suite belongs to a benchmark (`suite.benchmark`: METAWORLD or META_RL), the one object
that answers what differs between them (store naming, environments, evaluation protocol,
scoring by success rate or return, the report's table); no other module branches on which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.errors import unknown_choice

if TYPE_CHECKING:
    import numpy as np

    from bench.evaluate import EvalProtocol

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


def v3_name(task: str) -> str:
    """The Meta-World v3 name of a v2 (or already v3) task name."""
    return task.removesuffix("-v2").removesuffix("-v3") + "-v3"


class Benchmark:
    """What a suite's benchmark decides, asked of `suite.benchmark` everywhere, so that no other
    module branches on which benchmark a suite belongs to: where its generated data is stored
    and by what, how its environments are made and an episode scored, what its
    evaluation protocol records, and how a report shows it. Environment code is imported inside
    the methods, and no data code at all: a report (which reads files only) imports this module."""

    name: str
    scored_by: str  # "success": mean success rate over tasks; "return": mean episode return
    unseen_task_table: bool  # reported as Table 4 (return per test task), not Table 1
    trains_experts: bool  # its data comes from SAC experts trained in one process, not from
    # scripted-expert workers that a launcher can dispatch task by task (bench/data/prepare.py)
    store_prefix: str | None  # its generated store's folder name before `-ep<episodes>`; None:
    # named by data.generator (bench/data/locations.py STORE_PREFIXES)
    store_keys: tuple[str, ...]  # the data settings that name and fill its generated store

    def __repr__(self) -> str:
        return f"<benchmark {self.name}>"

    def __eq__(self, other: object) -> bool:  # a copy (unpickled in a Slurm job) is the same
        return isinstance(other, Benchmark) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def episode_steps(self) -> int:
        raise NotImplementedError

    def task_parameters(self, manifest: Mapping[str, Any], tasks: Sequence[str]) -> dict:
        """The task parameters its evaluation takes from the data's manifest (none by default)."""
        return {}

    def describe(self, protocol: EvalProtocol) -> dict[str, object]:
        """The evaluation protocol as result.json records it."""
        raise NotImplementedError

    def make_envs(self, task: str, protocol: EvalProtocol, envs: list[Any]) -> list[np.ndarray]:
        """Fills `envs` with the task's evaluation episodes (so the caller can close whatever
        was made if one fails) and returns their first observations."""
        raise NotImplementedError

    def episode_scores(
        self, task: str, protocol: EvalProtocol, returns: np.ndarray, success: np.ndarray
    ) -> dict[str, object]:
        """A task's scores past its mean return: the success rate (None where there is no
        success rule) and the per-episode record."""
        raise NotImplementedError

    def evaluation_line(self, episodes: int) -> str:
        """The report's provenance line of its evaluation."""
        raise NotImplementedError


class MetaWorldV3(Benchmark):
    """Meta-World v3 with random goals (MT50-rand), scored by success rate."""

    name = "metaworld-v3"
    scored_by = "success"
    unseen_task_table = False
    trains_experts = False
    store_prefix = None
    store_keys = ("root", "generator", "episodes_per_task", "seed", "goal_pool_seed")

    @property
    def episode_steps(self) -> int:
        from bench.envs.metaworld import MAX_EPISODE_STEPS

        return MAX_EPISODE_STEPS

    def describe(self, protocol: EvalProtocol) -> dict[str, object]:
        return {
            "episodes_per_task": protocol.episodes,
            "max_episode_steps": protocol.max_steps,
            "success": "info['success'] at any step of the episode",
            "goals": "random goal per episode (MT50-rand)",
            "goal_pool_seed": protocol.goal_pool_seed,
            "goal_selection_seed": protocol.goal_selection_seed,
        }

    def make_envs(self, task: str, protocol: EvalProtocol, envs: list[Any]) -> list[np.ndarray]:
        from bench.envs import metaworld

        pool = metaworld.goal_pool(task, protocol.goal_pool_seed)
        envs.extend(metaworld.make_env(task, pool[g]) for g in protocol.goal_indices(task))
        return [env.reset()[0] for env in envs]

    def episode_scores(
        self, task: str, protocol: EvalProtocol, returns: np.ndarray, success: np.ndarray
    ) -> dict[str, object]:
        return {
            "success_rate": float(success.mean()),
            "episode_success": success.astype(int).tolist(),
            "goal_indices": protocol.goal_indices(task),
        }

    def evaluation_line(self, episodes: int) -> str:
        return (
            f"evaluation: {episodes} episodes per task, random goals (MT50-rand), "
            "success = info['success'] at any of 500 steps, checkpoint: final"
        )


class MujocoMetaRL(Benchmark):
    """The MuJoCo meta-RL families (cheetah_dir, cheetah_vel, ant_dir): data from SAC experts,
    scored by mean episode return on each suite's test tasks (no success rule)."""

    name = "mujoco-meta-rl"
    scored_by = "return"
    unseen_task_table = True
    trains_experts = True
    store_prefix = "sac"  # whatever data.generator says; one store holds all three families
    store_keys = ("root", "episodes_per_task", "expert_steps", "seed")

    @property
    def episode_steps(self) -> int:
        from bench.envs.mujoco_meta import EPISODE_STEPS

        return EPISODE_STEPS

    def task_parameters(self, manifest: Mapping[str, Any], tasks: Sequence[str]) -> dict:
        """Each task's parameter as its data was made with (an imported Prompt-DT store's
        ant_dir goals are not our seeded ones)."""
        from bench.evaluate import stored_task_parameters

        return stored_task_parameters(manifest, tasks)

    def describe(self, protocol: EvalProtocol) -> dict[str, object]:
        return {
            "episodes_per_task": protocol.episodes,
            "max_episode_steps": protocol.max_steps,
            "score": "mean episode return per test task (no success rule)",
            "resets": "env.reset(seed) with seeds drawn from [run seed, task index]",
            "reset_seed": protocol.goal_selection_seed,
            "task_parameters": dict(protocol.task_parameters),
        }

    def make_envs(self, task: str, protocol: EvalProtocol, envs: list[Any]) -> list[np.ndarray]:
        from bench.envs.mujoco_meta import make_env

        seeds = protocol.reset_seeds(task)
        parameter = protocol.task_parameters.get(task)
        envs.extend(make_env(task, parameter) for _ in seeds)
        return [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds, strict=True)]

    def episode_scores(
        self, task: str, protocol: EvalProtocol, returns: np.ndarray, success: np.ndarray
    ) -> dict[str, object]:
        return {"success_rate": None, "episode_return": returns.tolist()}

    def evaluation_line(self, episodes: int) -> str:
        return (
            f"evaluation (meta-RL families): {episodes} episodes per test task, 200 steps, seeded "
            "resets, score = mean episode return, checkpoint: final"
        )


METAWORLD = MetaWorldV3()
META_RL = MujocoMetaRL()  # cheetah_dir, cheetah_vel, ant_dir: scored by return on test tasks
BENCHMARKS = (METAWORLD, META_RL)


@dataclass(frozen=True)
class Suite:
    """An ordered list of training tasks; a task's index in `tasks` is its task id everywhere.

    A suite with `test_tasks` is scored on those instead; a test task that is not a training
    task (an unseen task) gets the id `num_tasks + its position among the unseen tasks`.
    """

    name: str
    tasks: tuple[str, ...]
    benchmark: Benchmark = METAWORLD
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


def benchmark_of(name: object) -> Benchmark:
    """The benchmark of the suite called `name` (a string from a result.json, say); Meta-World
    v3, a Suite's default, for a name that is no suite."""
    suite = SUITES.get(str(name))
    return METAWORLD if suite is None else suite.benchmark


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

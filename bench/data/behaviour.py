"""Behaviour policies that make a task's data "from random to expert" (the generators).

A behaviour acts in one task for all of its episodes: `start_episode(e)` and then `act(obs)`
per step. All its randomness comes from the task's one generator stream, drawn in a fixed order,
so a task's data is a function of (seed, task index) alone. What it carries from one episode to
the next beyond that stream is its `carried_state()`, so that a generation can resume between
two episodes (bench.data.chunks).

- `NoisyExpert` (`data.generator=noisy_expert`): the scripted expert with i.i.d. perturbations
  (uniform-random actions in its place, Gaussian noise), annealed per episode. They carry no
  information about the state, so a least-squares cloner averages them away and recovers the
  expert, only scaled down (docs/scripted-experts.md, "Replay-like data").
- `ReplayLearner` (`data.generator=replay`, the default): a stand-in for the SAC replay buffer the
  paper's data comes from. The task's episodes are one learning run whose competence c rises
  from 0 (episode 0: an untrained policy) to 1 (the last episode: the expert), and whose
  mistakes are systematic, so that a cloner inherits them: the untrained policy's habits, and
  an expert that pursues shifted targets with a biased, time-correlated action noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar, Protocol

import numpy as np

from bench.envs.metaworld import (
    ACTION_DIM,
    MAX_EPISODE_STEPS,
    OBSERVATION_DIM,
    ScriptedExpert,
    scripted_policy,
)


class Behaviour(Protocol):
    """How a generator acts in one task, episode by episode."""

    def start_episode(self, episode: int) -> None: ...

    def act(self, observation: np.ndarray) -> np.ndarray:
        """The (4,) float32 action in [-1, 1] for one observation of the running episode."""
        ...

    def carried_state(self) -> dict[str, np.ndarray]:
        """What the behaviour carries from one episode to the next besides its generator's
        state and what its constructor draws: a generation resumed between two episodes
        (bench.data.chunks) rebuilds the behaviour, then restores this."""
        ...

    def restore_carried_state(self, state: Mapping[str, np.ndarray]) -> None: ...


class BehaviourFactory(Protocol):
    """A behaviour class: made once per task, told its settings for the manifest."""

    # Not a ClassVar: mypy never matches a ClassVar protocol member on a class object.
    SCHEDULE: str

    def __call__(self, task: str, episodes: int, rng: np.random.Generator) -> Behaviour: ...


def competence(episode: int, num_episodes: int) -> float:
    """How far a task's run has come: 0 at its first episode, 1 at its last."""
    return episode / max(num_episodes - 1, 1)


# The noisy_expert generator --------------------------------------------------------------------

MAX_NOISE_STD = 0.5


def noise_schedule(episode: int, num_episodes: int) -> tuple[float, float]:
    """(random_prob, noise_std) of an episode of a task: random first, pure expert last."""
    progress = competence(episode, num_episodes)
    return 1.0 - progress, MAX_NOISE_STD * (1.0 - progress)


class NoisyExpert:
    """The scripted expert, with the probability of a uniform-random action annealed from 1 to 0
    and i.i.d. Gaussian noise on the other actions from 0.5 to 0 over a task's episodes.

    Gaussian noise alone cannot get near random (a clipped expert with sigma=3 still succeeds 31 %
    of the time, shared/notes/metaworld-v3.md section 2), hence the random actions.
    """

    # Written into the manifest as it always was: stores made before the replay generator
    # existed must keep resuming and hashing the same.
    SCHEDULE: ClassVar[str] = (
        "progress = e / max(N - 1, 1); random_prob = 1 - progress; "
        "noise_std = 0.5 * (1 - progress)"
    )

    def __init__(self, task: str, episodes: int, rng: np.random.Generator) -> None:
        self.task, self.episodes, self.rng = task, episodes, rng
        self.policy = ScriptedExpert(task, rng)

    def start_episode(self, episode: int) -> None:
        random_prob, noise_std = noise_schedule(episode, self.episodes)
        self.policy = ScriptedExpert(self.task, self.rng, random_prob, noise_std)

    def act(self, observation: np.ndarray) -> np.ndarray:
        return self.policy.act(observation[None], None)[0]

    def carried_state(self) -> dict[str, np.ndarray]:
        return {}  # each episode's expert is new, and ScriptedExpert draws nothing when made

    def restore_carried_state(self, state: Mapping[str, np.ndarray]) -> None:
        pass


# The replay generator --------------------------------------------------------------------------

# Where the scripted policies read positions (metaworld.policies `_parse_obs`): the first and
# second object in the current and the previous frame, and the goal. The learner's view of the
# task shifts them; the stored observation stays the true one.
OBJECT_SLICES = (slice(4, 7), slice(22, 25))
SECOND_OBJECT_SLICES = (slice(11, 14), slice(29, 32))
GOAL_SLICE = slice(36, 39)

# The untrained policy: tanh(W (s - s_0) + b + noise), as a SAC actor at initialisation samples
# a squashed Gaussian around a random smooth function of the state. W's entries are
# N(0, (HABIT_GAIN / (HABIT_SCALE sqrt(39)))^2): an observation change of HABIT_SCALE (in any
# direction) moves each pre-tanh action component by about N(0, HABIT_GAIN^2).
HABIT_GAIN = 1.0
HABIT_SCALE = 0.1  # m
HABIT_BIAS = 0.5  # norm of b
HABIT_NOISE = 0.7  # std of its pre-tanh AR(1) noise
# The expert's misconceptions, at competence 0 (they fade as (1 - c)^MISTAKE_POWER).
TARGET_SHIFT = 0.03  # m: norm of the run's persistent shift of each position it misjudges
TARGET_WANDER = 0.015  # m: per-coordinate std of that shift's wander from episode to episode
ACTION_BIAS = 0.4  # norm of the run's persistent action bias (actions live in [-1, 1]^4)
BIAS_WANDER = 0.15  # per-component std of that bias's wander from episode to episode
NOISE_STD = 0.4  # stationary std of the in-episode AR(1) action noise
MISTAKE_POWER = 1.5
# How the two alternate within an episode.
NOISE_STEPS = 10  # correlation time of the in-episode AR(1) noise, in steps
STRETCH_STEPS = 25  # mean length of a stretch of the untrained policy, in steps
HABIT_POWER = 2.0  # the untrained policy acts a fraction (1 - c)^2 of the steps
RUN_MEMORY = 0.1  # the wander's correlation length over episodes, as a fraction of N


class ReplayLearner:
    """One learning run in one task: competence c = e / (N - 1) rises from 0 to 1.

    Two policies share the run. The untrained one (a random tanh-linear function of how the
    scene has changed since the episode began, plus correlated noise: SAC's actor at
    initialisation) acts in stretches that fill a fraction (1 - c)^2 of the steps: all of episode
    0, a quarter of the steps half-way. The rest of the time the scripted expert acts, with
    misconceptions: it sees the objects and the goal shifted, its actions carry a bias, and its
    noise is correlated in time. The run draws its habits and misconceptions once per task, with
    a fixed size and a random direction (so that no task gets negligible ones by luck); from
    episode to episode the misconceptions wander (an AR(1) over episodes, as successive SAC
    policies resemble each other) and shrink as (1 - c)^1.5. A cloner fitted on this data learns
    the habits and the misconceptions, because they are consistent; zero-mean i.i.d. noise would
    average away (docs/scripted-experts.md, "Replay-like data").
    """

    SCHEDULE: ClassVar[str] = (
        f"c = e / max(N - 1, 1); stretches (mean {STRETCH_STEPS} steps) filling (1 - c)^"
        f"{HABIT_POWER:g} of the steps act tanh(W (s - s_0) + b + {HABIT_NOISE} z), W ~ N(0, "
        f"({HABIT_GAIN} / ({HABIT_SCALE} sqrt(39)))^2), |b| = {HABIT_BIAS}, s_0 the episode's "
        "first observation; the other steps act the scripted expert on an observation whose "
        "object, second-object and goal positions are shifted, plus an action bias and "
        f"{NOISE_STD} z, all times (1 - c)^{MISTAKE_POWER:g}; the shifts (norm {TARGET_SHIFT} m) "
        f"and the bias (norm {ACTION_BIAS}) are drawn once per task and wander over episodes "
        f"(AR(1), correlation length {RUN_MEMORY} N, std {TARGET_WANDER} m / {BIAS_WANDER}); z: "
        f"unit AR(1) noise with a correlation time of {NOISE_STEPS} steps; actions clipped to "
        "[-1, 1]"
    )

    def __init__(self, task: str, episodes: int, rng: np.random.Generator) -> None:
        self.expert = scripted_policy(task)
        self.episodes, self.rng = episodes, rng
        gain = HABIT_GAIN / (HABIT_SCALE * math.sqrt(OBSERVATION_DIM))
        self.habit_weights = gain * rng.standard_normal((ACTION_DIM, OBSERVATION_DIM))
        self.habit_bias = _fixed_norm(rng, ACTION_DIM, HABIT_BIAS)
        self.shift_mean = np.stack([_fixed_norm(rng, 3, TARGET_SHIFT) for _ in range(3)])
        self.bias_mean = _fixed_norm(rng, ACTION_DIM, ACTION_BIAS)
        self.shift_wander = TARGET_WANDER * rng.standard_normal((3, 3))
        self.bias_wander = BIAS_WANDER * rng.standard_normal(ACTION_DIM)
        self.memory = math.exp(-1.0 / max(RUN_MEMORY * episodes, 1.0))
        # The episode's schedule; start_episode draws it.
        self.view_offset = np.zeros(OBSERVATION_DIM)
        self.bias = np.zeros(ACTION_DIM)
        self.noise = np.zeros((MAX_EPISODE_STEPS, ACTION_DIM))
        self.noise_std = 0.0
        self.habitual = np.ones(MAX_EPISODE_STEPS, dtype=bool)
        self.start = np.zeros(OBSERVATION_DIM)
        self.step = 0

    def start_episode(self, episode: int) -> None:
        """Draw the episode's misconceptions and its whole noise and stretch schedule (the
        same number of draws for every episode)."""
        if episode > 0:  # episode 0 starts from the wander's stationary draw
            self.shift_wander = _ar1_step(self.rng, self.shift_wander, self.memory, TARGET_WANDER)
            self.bias_wander = _ar1_step(self.rng, self.bias_wander, self.memory, BIAS_WANDER)
        novice = 1.0 - competence(episode, self.episodes)
        mistakes = novice**MISTAKE_POWER
        shifts = mistakes * (self.shift_mean + self.shift_wander)
        self.view_offset = np.zeros(OBSERVATION_DIM)
        for slices, shift in zip((OBJECT_SLICES, SECOND_OBJECT_SLICES), shifts[:2], strict=True):
            for part in slices:
                self.view_offset[part] = shift
        self.view_offset[GOAL_SLICE] = shifts[2]
        self.bias = mistakes * (self.bias_mean + self.bias_wander)
        self.noise = ar1_noise(self.rng, MAX_EPISODE_STEPS, NOISE_STEPS)
        self.noise_std = NOISE_STD * mistakes
        self.habitual = stretches(self.rng, MAX_EPISODE_STEPS, novice**HABIT_POWER, STRETCH_STEPS)
        self.start = np.zeros(OBSERVATION_DIM)
        self.step = 0

    def act(self, observation: np.ndarray) -> np.ndarray:
        step = self.step
        self.step += 1
        if step == 0:
            self.start = observation.copy()
        if self.habitual[step]:  # the expert is not asked: its answer would be thrown away
            drive = self.habit_weights @ (observation - self.start) + self.habit_bias
            return np.tanh(drive + HABIT_NOISE * self.noise[step]).astype(np.float32)
        action = self.expert.get_action(observation + self.view_offset)
        action = action + self.bias + self.noise_std * self.noise[step]
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def carried_state(self) -> dict[str, np.ndarray]:
        """The wander, the only thing one episode hands the next (start_episode redraws the
        rest; the habits and the means are drawn once, in __init__)."""
        return {"shift_wander": self.shift_wander.copy(), "bias_wander": self.bias_wander.copy()}

    def restore_carried_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.shift_wander = np.array(state["shift_wander"], dtype=np.float64)
        self.bias_wander = np.array(state["bias_wander"], dtype=np.float64)


def _fixed_norm(rng: np.random.Generator, size: int, norm: float) -> np.ndarray:
    """A vector of length `norm` in a uniformly random direction."""
    direction = rng.standard_normal(size)
    return norm * direction / np.linalg.norm(direction)


def _ar1_step(
    rng: np.random.Generator, value: np.ndarray, memory: float, std: float
) -> np.ndarray:
    """One step of a stationary AR(1) with marginal std `std` and coefficient `memory`."""
    innovation = std * rng.standard_normal(value.shape)
    return memory * value + math.sqrt(1.0 - memory**2) * innovation


def ar1_noise(rng: np.random.Generator, steps: int, correlation_steps: float) -> np.ndarray:
    """(steps, 4) stationary AR(1) noise with unit marginal std: a discretised
    Ornstein-Uhlenbeck process with correlation time `correlation_steps`."""
    memory = math.exp(-1.0 / correlation_steps)
    innovations = math.sqrt(1.0 - memory**2) * rng.standard_normal((steps, ACTION_DIM))
    innovations[0] = rng.standard_normal(ACTION_DIM)  # start in the stationary distribution
    noise = np.empty_like(innovations)
    noise[0] = innovations[0]
    for step in range(1, steps):
        noise[step] = memory * noise[step - 1] + innovations[step]
    return noise


def stretches(
    rng: np.random.Generator, steps: int, fraction: float, mean_steps: float
) -> np.ndarray:
    """(steps,) bool: a two-state Markov chain that spends `fraction` of its time (in
    expectation, starting stationary) in stretches of mean length `mean_steps`."""
    draws = rng.random(steps)
    if fraction >= 1.0 or fraction <= 0.0:
        return np.full(steps, fraction >= 1.0)
    leave = 1.0 / mean_steps
    enter = min(1.0, leave * fraction / (1.0 - fraction))
    # With `enter` capped at 1 the stretches are longer than asked, the fraction still right.
    leave = enter * (1.0 - fraction) / fraction if enter >= 1.0 else leave
    state = draws[0] < fraction
    out = np.empty(steps, dtype=bool)
    for step in range(steps):
        out[step] = state
        state = draws[step] >= leave if state else draws[step] < enter
    return out


# `data.generator`'s choices.
BEHAVIOURS: dict[str, BehaviourFactory] = {"replay": ReplayLearner, "noisy_expert": NoisyExpert}

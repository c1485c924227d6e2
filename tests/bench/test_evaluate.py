"""The evaluator on real Meta-World v3 episodes: seeded goals, lockstep, any-step success."""

from __future__ import annotations

import numpy as np

from bench.envs.metaworld import ScriptedExpert
from bench.evaluate import EvalProtocol, evaluate, run_episodes
from bench.suites import Suite


class UniformRandom:
    def reset(self, num_episodes: int) -> None:
        self.rng = np.random.default_rng(0)

    def act(self, observations: np.ndarray, rewards: np.ndarray | None) -> np.ndarray:
        return self.rng.uniform(-1, 1, (len(observations), 4))


class Recorder:
    """Wraps a policy and records the batch shapes and rewards it is called with."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []

    def reset(self, num_episodes: int) -> None:
        self.inner.reset(num_episodes)

    def act(self, observations, rewards):
        self.calls.append((observations.shape, None if rewards is None else rewards.shape))
        return self.inner.act(observations, rewards)


def test_goals_are_distinct_seeded_and_differ_between_seeds():
    first = EvalProtocol(episodes=10, goal_pool_seed=1000, goal_selection_seed=0)
    again = EvalProtocol(episodes=10, goal_pool_seed=1000, goal_selection_seed=0)
    other = EvalProtocol(episodes=10, goal_pool_seed=1000, goal_selection_seed=1)
    assert first.goal_indices("reach-v3") == again.goal_indices("reach-v3")
    assert len(set(first.goal_indices("reach-v3"))) == 10
    assert first.goal_indices("reach-v3") != other.goal_indices("reach-v3")


def test_expert_succeeds_and_random_fails_with_one_batched_call_per_step():
    protocol = EvalProtocol(episodes=3, goal_pool_seed=1000, goal_selection_seed=0)
    expert = Recorder(ScriptedExpert("reach-v3"))
    scores = run_episodes("reach-v3", expert, protocol)
    assert scores["success_rate"] == 1.0 and scores["mean_return"] > 4000
    assert len(expert.calls) == 500
    assert expert.calls[0] == ((3, 39), None) and expert.calls[1] == ((3, 39), (3,))

    random_scores = run_episodes("reach-v3", UniformRandom(), protocol)
    assert random_scores["success_rate"] < 1.0
    assert random_scores["mean_return"] < scores["mean_return"] / 2


def test_evaluate_reports_every_task_and_the_mean():
    suite = Suite("two", ("reach-v3", "button-press-v3"))
    protocol = EvalProtocol(episodes=2, goal_pool_seed=1000, goal_selection_seed=0)
    policies = {0: ScriptedExpert("reach-v3"), 1: UniformRandom()}
    scores = evaluate(suite, policies.__getitem__, protocol, progress=False)
    assert list(scores["per_task"]) == ["reach-v3", "button-press-v3"]
    rates = [r["success_rate"] for r in scores["per_task"].values()]
    assert scores["success_rate"] == np.mean(rates)
    assert scores["protocol"]["success"] == "info['success'] at any step of the episode"


class FailsAtStep:
    def __init__(self, step: int) -> None:
        self.step = step

    def reset(self, num_episodes: int) -> None:
        self.calls = 0

    def act(self, observations, rewards):
        self.calls += 1
        if self.calls > self.step:
            raise RuntimeError("policy bug")
        return np.zeros((len(observations), 4))


def test_environments_are_closed_when_the_policy_raises(monkeypatch):
    """Real environments, each noting its close(): a policy bug must not leak MuJoCo envs."""
    import pytest

    import bench.evaluate
    from bench.envs import metaworld

    made = []
    make_env = metaworld.make_env

    def make_and_note(task, goal):
        env = make_env(task, goal)
        close = env.close
        env.closed = False

        def close_and_note():
            env.closed = True
            close()

        env.close = close_and_note
        made.append(env)
        return env

    monkeypatch.setattr(bench.evaluate.metaworld, "make_env", make_and_note)
    protocol = EvalProtocol(episodes=3, goal_pool_seed=1000, goal_selection_seed=0)
    with pytest.raises(RuntimeError, match="policy bug"):
        run_episodes("reach-v3", FailsAtStep(5), protocol)
    assert len(made) == 3 and all(env.closed for env in made)

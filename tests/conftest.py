"""Shared fixtures: small real datasets generated once per test session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.data.generate import generate_dataset
from bench.data.store import DatasetStore
from bench.suites import Suite

SMOKE_EPISODES = 6  # configs/scale/smoke.yaml: data.episodes_per_task
TINY_TASKS = ("reach-v3", "button-press-v3")


@pytest.fixture(scope="session")
def smoke_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `data.root` already holding the mt5 smoke dataset, so CLI runs skip generation."""
    from bench.suites import get_suite

    root = tmp_path_factory.mktemp("data")
    generate_dataset(
        root / f"scripted-ep{SMOKE_EPISODES}",
        get_suite("mt5").tasks,
        episodes_per_task=SMOKE_EPISODES,
        progress=False,
    )
    return root


@pytest.fixture(scope="session")
def tiny_suite() -> Suite:
    return Suite("tiny", TINY_TASKS)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> DatasetStore:
    """Two tasks, four episodes each (two train, two prompt)."""
    root = tmp_path_factory.mktemp("tiny") / "scripted-ep4"
    return generate_dataset(root, TINY_TASKS, episodes_per_task=4, progress=False)


@pytest.fixture(scope="session")
def build_smoke() -> Callable[..., Any]:
    """Build a method with its options exactly as `bench run method=<name> scale=smoke` resolves
    them, plus any `values` given: `build_smoke(name, suite, data, seed=0, **values)`."""
    from bench.config import compose_config
    from bench.registry import build_method

    def build(name: str, suite: Suite, data: Any, seed: int = 0, **values: Any) -> Any:
        config = compose_config([f"method={name}", "scale=smoke"])
        smoke = {k: v for k, v in config["method"].items() if k != "name"}
        return build_method(name, {**smoke, **values}, suite, data, seed)

    return build


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small updates on 2 shared cores: 2 threads are up to 10x slower (notes/d3rlpy.md)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

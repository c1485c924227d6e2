"""What every MT30 probe starts from: one sweep run's trained method and its evaluation goals.

A probe names the run by its directory, so any variant of a method is what it measures (MTDT
without task input is `mtdt/conditioning=none/seed<N>`, beside the task-ID MTDT's `mtdt/seed<N>`).
The probes run as scripts (`python reports/mt30-small/probes/<probe>.py`), so this module sits
beside them on the import path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from bench import results
from bench.conditioning import trained_method
from bench.evaluate import EvalProtocol
from bench.settings import Settings, load_settings


def sweep_run(run_dir: str, data_root: str, episodes: int) -> tuple[Settings, Any, EvalProtocol]:
    """(the run's settings, its method at its checkpoint, `episodes` per task on its seed's
    goals: those of the run's own evaluations, fewer of them), on one thread as the sweep runs."""
    torch.set_num_threads(1)
    saved = yaml.safe_load((Path(run_dir) / results.CONFIG).read_text()) or {}
    store = f"data.root={data_root}"
    method = trained_method(Path(run_dir), [store])  # checks the saved overrides still hold
    settings = load_settings([*saved["overrides"], store])
    seed = settings.seed
    protocol = EvalProtocol(episodes, settings.eval.goal_pool_seed_offset + seed, seed)
    return settings, method, protocol

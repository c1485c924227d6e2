"""The process state a run owns: random generators and thread counts, set once by the runner.

Methods never seed or read a global generator: they build their networks from an explicit
`torch.Generator` and draw batches from their own NumPy generators (both in their state_dict).
What stays global is what libraries draw from behind our back (dropout masks from torch's
default generators on CPU and on every CUDA device, anything that uses `random` or NumPy's
legacy global state). The runner seeds all of those once, and every checkpoint captures and
restores them, so a resumed run continues bit-for-bit on CPU and on CUDA.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's legacy and torch's global generators (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device's default generator
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def set_threads(intra_op: int | None, inter_op: int | None = None) -> None:
    """Torch's intra- and inter-op CPU threads (None keeps torch's default).

    Inter-op threads can be set only before the first parallel work of the process, so a second
    call with the value already in force is accepted and any other value is an error of ours.
    """
    if intra_op is not None:
        torch.set_num_threads(int(intra_op))
    if inter_op is not None and torch.get_num_interop_threads() != int(inter_op):
        torch.set_num_interop_threads(int(inter_op))


def capture_rng_state() -> dict[str, Any]:
    """Every global generator's state, as tensors and plain values a weights-only load accepts."""
    python_version, python_state, python_gauss = random.getstate()
    legacy = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": python_version, "state": list(python_state), "gauss": python_gauss},
        "numpy": {
            "bit_generator": legacy["bit_generator"],
            "key": torch.from_numpy(np.asarray(legacy["state"]["key"], dtype=np.int64)),
            "pos": int(legacy["state"]["pos"]),
            "has_gauss": int(legacy["has_gauss"]),
            "cached_gaussian": float(legacy["gauss"]),
        },
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Put back what `capture_rng_state` saw; a CUDA count that differs is a UserError upstream."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    legacy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": legacy["bit_generator"],
            "state": {
                "key": legacy["key"].numpy().astype(np.uint32),
                "pos": legacy["pos"],
            },
            "has_gauss": legacy["has_gauss"],
            "gauss": legacy["cached_gaussian"],
        }
    )
    torch.set_rng_state(state["torch_cpu"])
    cuda_states = list(state["torch_cuda"])
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) != torch.cuda.device_count():
            raise ValueError(
                f"checkpoint holds {len(cuda_states)} CUDA generator states, "
                f"this process sees {torch.cuda.device_count()} devices"
            )
        torch.cuda.set_rng_state_all(cuda_states)

"""The averaged harmony score of the paper's Def. 3.2 and its chance level.

Functions over (tasks, weights) gradient tensors, read one task row at a time (the paper's
network has 4.7M maskable weights and MT50 has 50 tasks): the DT methods log them as training
diagnostics, HarmoDT at each mask update (methods/dt.py, methods/harmodt.py; docs/harmodt.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor


def average_harmony(task_gradients: Tensor) -> float:
    """Def. 3.2: the mean over tasks i and weights j of (g_i * g_mean)_j / (|g_ij| |g_mean_j|).

    `task_gradients` is (tasks, weights). Each term is the sign agreement of one scalar with the
    mean gradient; a term where either gradient is zero (e.g. a weight the task's mask turns
    off) has no direction and is left out of the mean rather than counted as 0.

    The mean includes task i itself, as Def. 3.2 writes it, so unrelated gradients score above
    0 (independent Gaussian ones: (2/pi) arcsin(1/sqrt(tasks)), 0.295 for 5 tasks, 0.090 for
    50) and zeros raise that further; `harmony_chance` is that level for the given gradients.
    """
    return _sign_agreement(task_gradients, task_gradients.mean(dim=0).sign())


def harmony_chance(task_gradients: Tensor, rng: np.random.Generator, draws: int = 1) -> float:
    """`average_harmony`'s chance level: its expected value when tasks agree only by chance.

    The null keeps every magnitude and zero and flips the sign of each entry by a fair coin
    (mean over `draws` draws from `rng`). It keeps what lifts Def. 3.2 without any agreement
    (each task's own share of the mean; with masks, weights that only a few tasks update) and
    removes any direction the tasks share. Each term reads one weight's column only, so this
    has the expectation of flipping each task's whole gradient by one coin (a sign-flip test
    over tasks), but one draw already averages over every weight (error ~1e-3 at 1e5 weights),
    where whole-task flips would need many (5 tasks have only 16 distinct ones).
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    seeds = rng.integers(2**63, size=draws)
    return float(np.mean([_flipped_harmony(task_gradients, int(seed)) for seed in seeds]))


def _flipped_harmony(task_gradients: Tensor, seed: int) -> float:
    """Def. 3.2 of the gradients with their signs flipped by the coins of `seed`."""
    total = torch.zeros_like(task_gradients[0])  # the sum: the mean's sign at no division
    for flipped in _coin_flipped(task_gradients, seed):
        total += flipped
    return _sign_agreement(_coin_flipped(task_gradients, seed), total.sign())


def _coin_flipped(task_gradients: Tensor, seed: int) -> Iterator[Tensor]:
    """Each task's gradient with the sign of every entry flipped by a fair coin.

    Task i's coins come from a stream of its own, (seed, i), so a second pass redraws the same
    coins instead of holding (tasks, weights) of them; drawn by NumPy on the CPU, they are the
    same on every device. The rows are written into one buffer (fresh tensors of this size
    cost more in page faults than the arithmetic): use each before taking the next.
    """
    size = task_gradients.shape[1]
    signs, flipped = torch.empty_like(task_gradients[0]), torch.empty_like(task_gradients[0])
    for task, gradient in enumerate(task_gradients):
        coins = np.random.Generator(np.random.PCG64([seed, task])).bytes((size + 7) // 8)
        signs.copy_(torch.from_numpy(np.unpackbits(np.frombuffer(coins, np.uint8), count=size)))
        yield torch.mul(gradient, signs.mul_(-2).add_(1), out=flipped)


def _sign_agreement(rows: Iterable[Tensor], mean_sign: Tensor) -> float:
    """The mean of sign(g_ij) * mean_sign_j over the terms where both are nonzero.

    One row at a time: (tasks, weights) temporaries are big. Dot products of +-1/0 vectors
    are exact below 2^24 weights (the paper's network has 4.7M) and ~3x faster on the CPU
    than an elementwise product and two reductions.
    """
    mean_defined, sign = mean_sign.abs(), torch.empty_like(mean_sign)
    agreement, defined = 0.0, 0.0
    for row in rows:
        torch.sign(row, out=sign)
        agreement += float(torch.dot(sign, mean_sign))
        defined += float(torch.dot(sign.abs_(), mean_defined))
    return agreement / max(defined, 1.0)

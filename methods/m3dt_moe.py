"""M3DT's mixture-of-experts feed-forward layer and its task grouping, as small pieces.

The layer wraps a block's shared MLP: `mlp(h) + experts(h)`, so the block's own forward (and
the acting path of methods/dt_acting.py, which calls `block.mlp`) run unchanged. What the
expert part adds depends on the route the method sets before a forward:
- `BACKBONE` (stage 1): nothing, the block is Prompt-DT's;
- an expert index (stage 2): that one expert's output;
- `ROUTER` (stage 3): the router's softmax-weighted sum of every expert's output, per token.
With `read_rows` set (M3DT sets it on the last block while it trains), the expert part and the
shared MLP run only on the token rows the action head reads, the state tokens: a row's MLP output
reaches only that row, and in the last block nothing reads the other rows. The loss and every
gradient are those of all rows, for about a quarter of the rows (20 of 75 at K = 20).
Shapes follow the official code (prompt_dt/prompt_decision_transformer_with_moe.py): an
expert is the block's MLP shape (d -> 4d -> d, activation, dropout), a router is a 5-layer
ReLU MLP d -> 4d -> 4d -> 4d -> 2d -> experts with a softmax (docs/m3dt.md).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from methods.dt import DTConfig

BACKBONE = -1
ROUTER = -2


def feed_forward(config: DTConfig) -> nn.Sequential:
    """One expert: the shape of the block's MLP (methods/dt.py's `Block.mlp`)."""
    activation = {"relu": nn.ReLU, "gelu": nn.GELU}[config.activation]
    width = config.embed_dim
    return nn.Sequential(
        nn.Linear(width, 4 * width),
        activation(),
        nn.Linear(4 * width, width),
        nn.Dropout(config.dropout),
    )


def router(width: int, num_experts: int) -> nn.Sequential:
    """Token-level gate: the official `Router(d, 2d, E)`, i.e. d -> 4d -> 4d -> 4d -> 2d -> E."""
    hidden = 4 * width
    return nn.Sequential(
        nn.Linear(width, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 2 * width),
        nn.ReLU(),
        nn.Linear(2 * width, num_experts),
        nn.Softmax(dim=-1),
    )


RouterInit = Literal["official", "normal"]


def torch_default_init(module: nn.Module, generator: torch.Generator) -> None:
    """Every Linear of `module` as torch's own `reset_parameters` draws it (weights and biases
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)): kaiming_uniform with a=sqrt(5)), from `generator`. The
    official Router keeps this init; the rest of its network is drawn N(0, 0.02)."""
    for linear in module.modules():
        if isinstance(linear, nn.Linear):
            bound = linear.in_features**-0.5
            for param in (linear.weight, linear.bias):
                if param is not None:  # drawn on the CPU generator, then put on the device
                    drawn = torch.empty(param.shape).uniform_(-bound, bound, generator=generator)
                    with torch.no_grad():
                        param.copy_(drawn)


class MixtureFeedForward(nn.Module):
    """`shared(h)` plus the expert part selected by `route` (module docstring)."""

    def __init__(self, shared: nn.Module, config: DTConfig, num_experts: int) -> None:
        super().__init__()
        self.shared = shared
        self.experts = nn.ModuleList(feed_forward(config) for _ in range(num_experts))
        self.router = router(config.embed_dim, num_experts)
        self.route = BACKBONE
        self.read_rows: slice | None = None  # (module docstring) None: every row

    def forward(self, h: Tensor) -> Tensor:
        if self.route == BACKBONE:  # Prompt-DT's block, whatever `read_rows` says
            return self.shared(h)
        if self.read_rows is None:
            return self.shared(h) + self.expert_part(h)
        rows = h[:, self.read_rows]
        out = torch.zeros_like(h)  # the rows nothing reads stay 0
        out[:, self.read_rows] = self.shared(rows) + self.expert_part(rows)
        return out

    def expert_part(self, h: Tensor) -> Tensor:
        if self.route >= 0:
            return self.experts[self.route](h)
        weights = self.router(h)  # (..., E)
        mixed = torch.stack([expert(h) for expert in self.experts], dim=-1)  # (..., d, E)
        return (mixed * weights.unsqueeze(-2)).sum(dim=-1)


# Task grouping ----------------------------------------------------------------------------


def conflict_features(task_gradients: Tensor) -> Tensor:
    """Per task, the elementwise product of its gradient with the mean gradient over tasks:
    what the official stage2_task_grouping_gradient.py clusters (ĝ ⊙ g_i)."""
    return task_gradients * task_gradients.mean(dim=0, keepdim=True)


def gram_matrix(points: Tensor, chunk: int = 1 << 20) -> Tensor:
    """`points @ points.T` in float64, accumulated over column chunks: k-means needs only
    this (tasks x tasks) matrix, never the millions of gradient coordinates again."""
    gram = torch.zeros(points.shape[0], points.shape[0], dtype=torch.float64)
    for part in torch.split(points, chunk, dim=1):
        part = part.to(torch.float64).cpu()
        gram += part @ part.T
    return gram


def kmeans(
    gram: Tensor, k: int, generator: torch.Generator, iterations: int = 100
) -> tuple[Tensor, float]:
    """Lloyd's k-means from k distinct points drawn by `generator`, computed from the points'
    Gram matrix -> (labels, total Euclidean distance of the points to their centroids).

    As the official `kmeans`, except: it stops when no label changes (the official code stops
    when no centroid coordinate moves by 1e-4), and a cluster left empty takes the point
    farthest from its own centroid, so that every expert gets at least one task.
    """
    n = gram.shape[0]
    diagonal = gram.diagonal()
    seeds = torch.randperm(n, generator=generator)[:k]
    squared = diagonal[:, None] - 2 * gram[:, seeds] + diagonal[seeds][None, :]
    labels: Tensor | None = None
    for _ in range(iterations):
        new = squared.argmin(dim=1)
        for cluster in range(k):
            if not (new == cluster).any():
                own = squared.gather(1, new[:, None]).squeeze(1).clone()
                own[torch.bincount(new, minlength=k)[new] <= 1] = -1.0  # empty no other
                new[own.argmax()] = cluster
        if labels is not None and torch.equal(new, labels):
            break
        labels = new
        weights = torch.nn.functional.one_hot(labels, k).to(gram.dtype)
        weights = weights / weights.sum(dim=0, keepdim=True)  # centroid = points.T @ weights
        inner = gram @ weights  # <x_i, c_k>
        squared = diagonal[:, None] - 2 * inner + (weights * inner).sum(dim=0)[None, :]
    assert labels is not None
    total = float(squared.clamp(min=0).min(dim=1).values.sqrt().sum())
    return labels, total


def gradient_groups(
    task_gradients: Tensor,
    num_groups: int,
    generator: torch.Generator,
    restarts: int = 40,
    repeats: int = 40,
) -> list[list[int]]:
    """Tasks clustered by their gradient conflicts with the mean gradient.

    The official procedure: the best of `restarts` k-means runs by total distance, repeated
    `repeats` times, keeping the repeat whose group sizes vary least (first one on ties).
    """
    gram = gram_matrix(conflict_features(task_gradients))
    best: list[list[int]] | None = None
    best_spread = float("inf")
    for _ in range(repeats):
        runs = [kmeans(gram, num_groups, generator) for _ in range(restarts)]
        labels = min(runs, key=lambda run: run[1])[0]
        groups = [torch.nonzero(labels == g).flatten().tolist() for g in range(num_groups)]
        spread = float(np.var([len(g) for g in groups]))
        if spread < best_spread:
            best, best_spread = groups, spread
    assert best is not None
    return best


def random_groups(num_tasks: int, num_groups: int, generator: torch.Generator) -> list[list[int]]:
    """The ablation (official stage2_task_grouping_random.py): shuffled tasks cut into
    contiguous groups, the first `num_tasks % num_groups` of them one task larger."""
    order = torch.randperm(num_tasks, generator=generator).tolist()
    size, extra = divmod(num_tasks, num_groups)
    groups, start = [], 0
    for g in range(num_groups):
        length = size + (1 if g < extra else 0)
        groups.append(order[start : start + length])
        start += length
    return groups


GroupingRule = Literal["gradient", "random"]

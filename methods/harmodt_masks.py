"""HarmoDT's task masks as functions over tensors (paper Sec. 4, Alg. 2, Eq. 8-13, App. C).

A task mask is a flat boolean vector over the maskable weights (True = active), and a set of
task masks is a (tasks, weights) tensor, one row per task. Nothing here knows about networks:
the method (methods/harmodt.py) flattens its weights and gradients into the same order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

Importance = Literal["magnitude", "fisher"]
# Where the paper and the official code disagree (docs/harmodt.md): Eq. 8's weighting and
# Fisher term, and Eq. 13's comparison.
ScoreForm = Literal["paper", "official"]
VoteRule = Literal["paper", "official"]
GradientForm = Literal["paper", "official"]


def erk_densities(shapes: Sequence[Sequence[int]], density: float) -> list[float]:
    """Per-layer fraction of active weights by Erdős-Rényi-Kernel (Evci et al. 2020, App. C).

    A layer's density is eps * (sum of its dims) / (product of its dims): (n_in + n_out) /
    (n_in * n_out) for a linear layer, with eps chosen so that the layers together keep
    `density` of all weights. A layer whose density would exceed 1 is made dense and eps is
    solved again for the rest (as in the reference ERK code).
    """
    sizes = [math.prod(shape) for shape in shapes]
    raw = [sum(shape) / size for shape, size in zip(shapes, sizes, strict=True)]
    if density >= 1.0:
        return [1.0] * len(shapes)
    dense: set[int] = set()
    while True:
        sparse = [i for i in range(len(shapes)) if i not in dense]
        budget = density * sum(sizes) - sum(sizes[i] for i in dense)
        eps = budget / sum(raw[i] * sizes[i] for i in sparse)
        if max(eps * raw[i] for i in sparse) <= 1.0:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]
        largest = max(raw[i] for i in sparse)
        dense |= {i for i in sparse if raw[i] == largest}


def erk_mask(
    shapes: Sequence[Sequence[int]], sparsity: float, generator: torch.Generator
) -> Tensor:
    """One task's flat mask: ERK densities per layer, exactly round((1 - S) * total) active.

    Each layer gets its ERK share of the active count (largest remainders get the rounding),
    placed uniformly at random within the layer.
    """
    sizes = [math.prod(shape) for shape in shapes]
    shares = [d * n for d, n in zip(erk_densities(shapes, 1.0 - sparsity), sizes, strict=True)]
    counts = [math.floor(share) for share in shares]
    missing = round((1.0 - sparsity) * sum(sizes)) - sum(counts)
    by_remainder = sorted(range(len(sizes)), key=lambda i: counts[i] - shares[i])
    for i in by_remainder[:missing]:
        counts[i] += 1
    parts = []
    for size, count in zip(sizes, counts, strict=True):
        part = torch.zeros(size, dtype=torch.bool)
        part[torch.randperm(size, generator=generator)[:count]] = True
        parts.append(part)
    return torch.cat(parts)


def cosine_alpha(t: int, total: int, eta_min: float, eta_max: float) -> int:
    """Eq. 12: weights swapped per task at step t of E = `total` (eta_min at 0 and E, eta_max
    at E/2)."""
    value = eta_max + 0.5 * (eta_min - eta_max) * (1.0 + math.cos(2.0 * math.pi * t / total))
    return math.ceil(round(value, 9))  # the rounding keeps float noise (50.000...01) from ceil


# Table 6 at the paper's own scale: t_m = 5000 of E = 1e6 steps is 200 mask updates, and
# eta_max = 100 is counted against the 4,718,592 weights its network masks (6 blocks of 256
# dims: docs/harmodt.md). A shorter run or a smaller network keeps these two proportions.
TABLE6_MASK_UPDATES = 200
TABLE6_STEPS = 1_000_000
TABLE6_ETA_MAX = 100
TABLE6_MASKABLE_WEIGHTS = 4_718_592


def update_steps(total: int, updates: int, interval: int | None) -> list[int]:
    """The step counts (1-based, after the step) that end with a mask update: every `interval`
    steps, or with `interval` None `updates` of them spread evenly over `total`, the last at
    `total` (min(updates, total) in all, where a fixed t_m would give total // t_m)."""
    if interval is not None:
        return list(range(interval, total + 1, interval))
    if updates >= total:
        return list(range(1, total + 1))
    return [-(-k * total // updates) for k in range(1, updates + 1)]  # ceil(k * total / updates)


def schedule_swaps(
    update_steps: Sequence[int], total: int, eta_min: float, eta_max: float
) -> int:
    """Weights one task swaps over a run: the sum of Eq. 12's alpha_t at its update steps."""
    return sum(cosine_alpha(t, total, eta_min, eta_max) for t in update_steps)


def table6_swapped_fraction() -> float:
    """The fraction of its maskable weights a task swaps over Table 6's whole run (~0.214%)."""
    interval = TABLE6_STEPS // TABLE6_MASK_UPDATES
    steps = range(interval, TABLE6_STEPS + 1, interval)
    return schedule_swaps(steps, TABLE6_STEPS, 0, TABLE6_ETA_MAX) / TABLE6_MASKABLE_WEIGHTS


def matching_eta_max(
    maskable: int, update_steps: Sequence[int], total: int, eta_min: float
) -> float:
    """The eta_max whose Eq. 12 schedule at `update_steps` swaps the fraction of `maskable`
    weights that Table 6 swaps (`table6_swapped_fraction`), as close as Eq. 12's round-up allows.

    Plain proportional scaling (100 * maskable / 4.72M) overshoots on small networks: each
    alpha_t is rounded up, which adds ~0.5 weight per update to a mean of a few (+27% on a
    1-layer, 128-dim network). The total is monotone in eta_max, so bisection finds it; at
    Table 6's own scale this is eta_max = 100 itself.
    """
    target = table6_swapped_fraction() * maskable
    proportional = TABLE6_ETA_MAX * maskable / TABLE6_MASKABLE_WEIGHTS
    low, high = float(eta_min), float(max(eta_min, 1.0))
    while schedule_swaps(update_steps, total, eta_min, high) < target:
        low, high = high, 2.0 * high
    for _ in range(60):  # low: total below target, high: at or above it
        middle = 0.5 * (low + high)
        if schedule_swaps(update_steps, total, eta_min, middle) < target:
            low = middle
        else:
            high = middle
    below = schedule_swaps(update_steps, total, eta_min, low)
    above = schedule_swaps(update_steps, total, eta_min, high)
    closest = low if target - below < above - target else high
    # The proportional value where it swaps exactly as many (Table 6's 100 at its own scale).
    same = schedule_swaps(update_steps, total, eta_min, proportional) == (
        schedule_swaps(update_steps, total, eta_min, closest)
    )
    return proportional if same else closest


def importance(
    kind: Importance,
    masked_grad: Tensor,
    weights: Tensor,
    form: ScoreForm,
    masked_loss: Tensor | None = None,
) -> Tensor:
    """Def. 4.2's importance I of one task's weights: |theta| (magnitude) or a Fisher term.

    Fisher, "paper": (grad log L_i(theta * M_i) * M_i)^2 = (g_bar_i / L_i)^2 by the chain rule,
    L_i being the masked loss behind g_bar_i; a zero loss (a perfect fit, so g_bar_i = 0 too)
    gives 0, not NaN. Fisher, "official": g_bar_i^2, the gradient of L rather than of log L.
    """
    if kind == "magnitude":
        return weights.abs()  # = |theta * M_i| on the active weights, the only ones scored
    if kind != "fisher":
        raise ValueError(f"unknown importance {kind!r}")
    if form == "official":
        return masked_grad.square()
    if form != "paper":
        raise ValueError(f"unknown score form {form!r}")
    if masked_loss is None:
        raise ValueError("the paper's Fisher importance needs the task's masked loss")
    if float(masked_loss) <= 0.0:
        return torch.zeros_like(masked_grad)
    return (masked_grad / masked_loss).square()


def harmony_scores(
    masked_grad: Tensor,
    mean_grad: Tensor,
    importances: Tensor,
    mask: Tensor,
    balance: float,
    form: ScoreForm,
) -> Tensor:
    """Eq. 8's harmony score H_i of one task's weights; +inf where already masked.

    "paper": A_i + lambda * I_i (Eq. 8 as printed). "official": lambda * A_i + I_i (the
    authors' mask_generate_harmo weighs the agreement, not the importance). A_i = g_bar_i * g_hat.
    """
    agreement = masked_grad * mean_grad
    if form == "paper":
        scores = agreement.add_(importances, alpha=balance)
    elif form == "official":
        scores = agreement.mul_(balance).add_(importances)
    else:
        raise ValueError(f"unknown score form {form!r}")
    return scores.masked_fill_(~mask, math.inf)


def update_task_mask(
    mask: Tensor,
    masked_grad: Tensor,
    full_grad: Tensor,
    mean_grad: Tensor,
    weights: Tensor,
    alpha: int,
    kind: Importance,
    balance: float,
    form: ScoreForm,
    masked_loss: Tensor | None = None,
) -> Tensor:
    """Alg. 2 for one task: mask the alpha lowest harmony scores among its active weights
    (Eq. 9), recover the alpha highest g_i * g_hat among the weights inactive before this
    update (Eq. 10). The number of active weights is unchanged.

    `masked_loss` (L_i at theta * M_i) is read by the paper's Fisher term only."""
    active = int(mask.count_nonzero())
    alpha = min(alpha, active, mask.numel() - active)
    if alpha == 0:
        return mask.clone()
    importances = importance(kind, masked_grad, weights, form, masked_loss)
    scores = harmony_scores(masked_grad, mean_grad, importances, mask, balance, form)
    to_mask = top_k_indices(scores, alpha, largest=False)
    recovery = (full_grad * mean_grad).masked_fill(mask, -math.inf)
    to_recover = top_k_indices(recovery, alpha, largest=True)
    updated = mask.clone()
    updated[to_mask] = False
    updated[to_recover] = True
    return updated


def top_k_indices(values: Tensor, k: int, largest: bool, chunks: int = 64) -> Tensor:
    """Indices of the k largest (or smallest) entries of a flat tensor.

    Exact: the top k of each of `chunks` slices, then the top k of their union. On CPU one
    top-k over millions of entries runs on one thread; this runs ~10x faster.
    """
    width = values.numel() // chunks
    if width < 4 * k:
        return values.topk(k, largest=largest).indices
    body = values[: chunks * width].view(chunks, width)
    per_chunk = body.topk(k, dim=1, largest=largest).indices
    per_chunk += torch.arange(0, chunks * width, width, device=values.device)[:, None]
    tail = torch.arange(chunks * width, values.numel(), device=values.device)
    candidates = torch.cat([per_chunk.reshape(-1), tail])
    return candidates[values[candidates].topk(k, largest=largest).indices]


def update_masks(
    masks: Tensor,
    masked_grads: Tensor,
    full_grads: Tensor,
    weights: Tensor,
    alpha: int,
    kind: Importance,
    balance: float,
    form: ScoreForm,
    masked_losses: Tensor | None = None,
) -> Tensor:
    """Alg. 2 for every task: masks, masked gradients g_bar_i (Eq. 4) and unmasked g_i are
    (tasks, weights); g_hat is the mean of the masked gradients. `masked_losses` (tasks,) are
    the losses behind g_bar_i, read by the paper's Fisher term only."""
    mean_grad = masked_grads.mean(dim=0)
    losses = [None] * len(masks) if masked_losses is None else list(masked_losses)
    return torch.stack(
        [
            update_task_mask(
                mask, masked, full, mean_grad, weights, alpha, kind, balance, form, loss
            )
            for mask, masked, full, loss in zip(
                masks, masked_grads, full_grads, losses, strict=True
            )
        ]
    )


def vote_mask(masks: Tensor, threshold: float, rule: VoteRule) -> Tensor:
    """Eq. 13: the unseen-task mask keeps a weight active where the number of training-task
    masks that have it active is > `threshold` ("paper") or >= `threshold` ("official",
    the authors' apply_final_mask)."""
    votes = masks.sum(dim=0)
    if rule == "paper":
        return votes > threshold
    if rule == "official":
        return votes >= threshold
    raise ValueError(f"unknown vote rule {rule!r}")


def mask_intersections(masks: Tensor, chunk: int = 1 << 20) -> Tensor:
    """(tasks, tasks) counts of weights active in both masks; float64, exact."""
    count = masks.shape[0]
    shared = torch.zeros(count, count, dtype=torch.float64, device=masks.device)
    for start in range(0, masks.shape[1], chunk):  # chunks: counts stay exact in float32
        block = masks[:, start : start + chunk].float()
        shared += (block @ block.T).double()
    return shared


def mean_pairwise_iou(masks: Tensor) -> float:
    """Mean over task pairs of |M_a and M_b| / |M_a or M_b| of their active weights."""
    count = masks.shape[0]
    if count < 2:
        return 1.0
    shared = mask_intersections(masks)
    active = shared.diagonal()
    iou = shared / (active[:, None] + active[None, :] - shared).clamp(min=1)
    pairs = ~torch.eye(count, dtype=torch.bool, device=masks.device)
    return float(iou[pairs].mean())


_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def pack_masks(masks: Tensor) -> Tensor:
    """(tasks, weights) bool -> (tasks, ceil(weights / 8)) uint8: checkpoints 8x smaller."""
    count, size = masks.shape
    padded = torch.zeros(count, -(-size // 8) * 8, dtype=torch.uint8)
    padded[:, :size] = masks.cpu()
    return (padded.view(count, -1, 8) * _BITS).sum(dim=-1, dtype=torch.uint8)


def unpack_masks(packed: Tensor, size: int) -> Tensor:
    """Inverse of `pack_masks` for masks over `size` weights."""
    bits = packed[..., None].bitwise_and(_BITS).ne(0)
    return bits.reshape(packed.shape[0], -1)[:, :size]


def masks_from_state(method_state: Mapping[str, Any]) -> Tensor | None:
    """The task masks held in a method's state_dict (None for methods without masks)."""
    if "task_masks" not in method_state:
        return None
    return unpack_masks(method_state["task_masks"], int(method_state["task_mask_size"]))

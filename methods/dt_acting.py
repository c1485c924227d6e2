"""The DT network as it acts: the last step's action only, with the prompt's keys and values
computed once per evaluation.

Exact up to float rounding, because of three facts of the causal stack:
- the prompt comes first and is fixed, so no later token changes its hidden states: its keys
  and values in every block are computed once, and its rows are never computed again;
- the last step's action token follows its state token, which never attends to it, so it is
  dropped;
- only the last state token's output is read, so the last block runs for that one query.
At the paper's shapes this leaves 59 of 75 token rows per step in the first five blocks and
one row in the sixth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.data.samplers import Segment
from methods.dt import Block, DecisionTransformerNet, blocks_of


class Actor:
    """`actor(segment, prompt)` -> (B, 1, act_dim): the action of each segment's last step."""

    def __init__(self, network: DecisionTransformerNet) -> None:
        self.network = network
        self._prompt: Segment | None = None
        self._prefix_kv: list[tuple[Tensor, Tensor]] | None = None
        self._prefix_mask: Tensor | None = None

    @torch.no_grad()
    def __call__(self, segment: Segment, prompt: Segment | None) -> Tensor:
        net = self.network
        if net.training:
            raise ValueError("acting leaves dropout out: put the network in eval mode first")
        conditioning = net.conditioner(segment, prompt) if net.conditioner is not None else None
        offset = conditioning.state_offset if conditioning is not None else None
        tokens, key_mask = net.embed(segment, offset)
        tokens, key_mask = net.embed_ln(tokens)[:, :-1], key_mask[:, :-1]
        has_prefix = conditioning is not None and conditioning.prefix is not None
        if has_prefix and prompt is not self._prompt:  # a new prompt: its cache is made once
            assert conditioning is not None  # implied by has_prefix
            self._cache_prefix(conditioning.prefix, conditioning.prefix_mask)
            self._prompt = prompt
        mask = _segment_mask(key_mask, self._prefix_mask if has_prefix else None)
        cached = self._prefix_kv if has_prefix else None
        blocks = blocks_of(net)
        x = tokens
        for index, block in enumerate(blocks):
            prefix_kv = cached[index] if cached is not None else None
            x = _block_rows(block, x, prefix_kv, mask, last_only=index == len(blocks) - 1)
        return net.predict_action(net.transformer.ln_f(x))

    def _cache_prefix(self, prefix: Tensor, prefix_mask: Tensor) -> None:
        """Run the prompt alone through the stack, keeping each block's keys and values."""
        length = prefix.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=prefix.device).tril()
        eye = torch.eye(length, dtype=torch.bool, device=prefix.device)
        attn_mask = (causal & prefix_mask[:, None, None, :]) | eye
        self._prefix_kv, x = [], prefix
        for block in blocks_of(self.network):
            self._prefix_kv.append(_keys_values(block, block.ln_1(x)))
            x = block(x, attn_mask)
        self._prefix_mask = prefix_mask


def _segment_mask(key_mask: Tensor, prefix_mask: Tensor | None) -> Tensor:
    """(B, 1, L, P + L): a segment token sees every valid prompt token and, causally, the
    valid segment tokens up to itself (and always itself, as the full forward's mask)."""
    length = key_mask.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=key_mask.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=key_mask.device)
    own = (causal & key_mask[:, None, None, :]) | eye
    if prefix_mask is None:
        return own
    seen = prefix_mask[:, None, None, :].expand(-1, 1, length, -1)
    return torch.cat((seen, own), dim=-1)


def _keys_values(block: Block, normed: Tensor) -> tuple[Tensor, Tensor]:
    """The block's keys and values (B, heads, L, head_dim) of already layer-normed rows."""
    attn = block.attn
    batch, length, width = normed.shape
    kv = F.linear(normed, attn.qkv.weight[width:], attn.qkv.bias[width:])
    keys, values = kv.view(batch, length, 2, attn.n_head, -1).permute(2, 0, 3, 1, 4)
    return keys, values


def _block_rows(
    block: Block,
    x: Tensor,
    prefix_kv: tuple[Tensor, Tensor] | None,
    mask: Tensor,
    last_only: bool,
) -> Tensor:
    """The block's output for the rows of `x` (only the last with `last_only`), attending to
    the cached prompt keys and values first."""
    attn = block.attn
    batch, _, width = x.shape
    normed = block.ln_1(x)
    keys, values = _keys_values(block, normed)
    if prefix_kv is not None:
        keys = torch.cat((prefix_kv[0], keys), dim=2)
        values = torch.cat((prefix_kv[1], values), dim=2)
    rows, residual = (normed[:, -1:], x[:, -1:]) if last_only else (normed, x)
    queries = F.linear(rows, attn.qkv.weight[:width], attn.qkv.bias[:width])
    queries = queries.view(batch, rows.shape[1], attn.n_head, -1).transpose(1, 2)
    row_mask = mask[:, :, -1:] if last_only else mask
    y = F.scaled_dot_product_attention(queries, keys, values, attn_mask=row_mask)
    out = residual + attn.proj(y.transpose(1, 2).reshape(batch, rows.shape[1], width))
    return out + block.mlp(block.ln_2(out))

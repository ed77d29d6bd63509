"""Attention computed as its definition, so that it can be differentiated twice and its probabilities seen.

Fused attention kernels (flash, memory-efficient, and the flash kernel torch picks on CPUs) never form
the probability matrix P = softmax(q kᵀ · scale + mask), and their backward has no derivative of its
own. Inside ``with ExplicitAttention(record):`` (a ``TorchFunctionMode``: on this thread only, and no
module of the model is touched) attention is computed as o = P v with P an ordinary tensor:

- ``F.scaled_dot_product_attention`` (timm's attention, most recent code) is computed by that formula;
- ``F.multi_head_attention_forward`` (``nn.MultiheadAttention``, torchvision's ViT) is computed by the
  same projections and formula for plain self- or cross-attention (no ``bias_k``/``bias_v``, zero
  attention or static keys; no key-padding mask); anything else runs as torch does. An active mode
  also turns off ``nn.MultiheadAttention``'s fused inference path, so its calls always arrive here.

Then second-order gradients pass through attention (ShapleyCAM's Hessian-vector products), and
``record`` (when given) receives every P (B×heads×queries×keys, before dropout), on which the output
depends, so that gradients with respect to it can be taken (LeGrad). Values equal the fused kernels' up
to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

Record = Callable[[torch.Tensor], None]


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``F.scaled_dot_product_attention``'s result and its probabilities P, by the definition it documents."""
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        key = key.repeat_interleave(query.shape[-3] // key.shape[-3], dim=-3)
        value = value.repeat_interleave(query.shape[-3] // value.shape[-3], dim=-3)
    factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    logits = (query * factor) @ key.transpose(-2, -1)
    if is_causal:
        allowed = torch.ones(logits.shape[-2:], dtype=torch.bool, device=logits.device).tril()
        logits = logits.masked_fill(~allowed, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            logits = logits.masked_fill(~attn_mask, float("-inf"))
        else:
            logits = logits + attn_mask
    probabilities = logits.softmax(dim=-1)
    dropped = F.dropout(probabilities, dropout_p) if dropout_p > 0 else probabilities
    return dropped @ value, probabilities


_SDPA = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal")
_MHA = (
    "query",
    "key",
    "value",
    "embed_dim_to_check",
    "num_heads",
    "in_proj_weight",
    "in_proj_bias",
    "bias_k",
    "bias_v",
    "add_zero_attn",
    "dropout_p",
    "out_proj_weight",
    "out_proj_bias",
    "training",
    "key_padding_mask",
    "need_weights",
    "attn_mask",
    "use_separate_proj_weight",
    "q_proj_weight",
    "k_proj_weight",
    "v_proj_weight",
    "static_k",
    "static_v",
    "average_attn_weights",
    "is_causal",
)
_MHA_DEFAULTS: dict[str, Any] = {
    "training": True,
    "key_padding_mask": None,
    "need_weights": True,
    "attn_mask": None,
    "use_separate_proj_weight": False,
    "q_proj_weight": None,
    "k_proj_weight": None,
    "v_proj_weight": None,
    "static_k": None,
    "static_v": None,
    "average_attn_weights": True,
    "is_causal": False,
}


def _named(names: Sequence[str], args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {**dict(zip(names, args, strict=False)), **kwargs}


def _multi_head(a: dict[str, Any], record: Record | None) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """``F.multi_head_attention_forward`` on sequence-first (L×N×E) inputs, or None where it is not plain."""
    a = {**_MHA_DEFAULTS, **a}
    query, key, value = a["query"], a["key"], a["value"]
    plain = (
        a["bias_k"] is None
        and a["bias_v"] is None
        and not a["add_zero_attn"]
        and a["key_padding_mask"] is None
        and a["static_k"] is None
        and a["static_v"] is None
        and query.dim() == 3
        and (a["attn_mask"] is None or a["attn_mask"].dim() == 2)
        and not (a["is_causal"] and a["attn_mask"] is None)  # torch refuses that call: let it say so
    )
    if not plain:
        return None
    length, batch, embed = query.shape
    heads = int(a["num_heads"])
    if a["use_separate_proj_weight"]:
        weights = (a["q_proj_weight"], a["k_proj_weight"], a["v_proj_weight"])
    else:
        weights = tuple(a["in_proj_weight"].chunk(3))
    bias = a["in_proj_bias"]
    biases = (None, None, None) if bias is None else tuple(bias.chunk(3))

    def split(t: torch.Tensor) -> torch.Tensor:  # S×N×E → N×heads×S×E/heads
        return t.reshape(t.shape[0], batch, heads, embed // heads).permute(1, 2, 0, 3)

    q, k, v = (split(F.linear(t, w, b)) for t, w, b in zip((query, key, value), weights, biases, strict=True))
    mask = a["attn_mask"]  # with is_causal, this is the causal mask (torch's hint)
    if mask is not None and mask.dtype == torch.bool:  # here True means "may not attend", unlike SDPA's masks
        mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(mask, float("-inf"))
    out, probabilities = attend(q, k, v, mask, float(a["dropout_p"]) if a["training"] else 0.0)
    if record is not None:
        record(probabilities)
    out = F.linear(out.permute(2, 0, 1, 3).reshape(length, batch, embed), a["out_proj_weight"], a["out_proj_bias"])
    if not a["need_weights"]:
        return out, None
    return out, probabilities.mean(dim=1) if a["average_attn_weights"] else probabilities


class ExplicitAttention(TorchFunctionMode):
    """``with ExplicitAttention(record):`` attention computed explicitly (see the module docstring)."""

    def __init__(self, record: Record | None = None) -> None:
        super().__init__()
        self.record = record

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Sequence[type],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            named = _named(_SDPA, args, kwargs)
            out, probabilities = attend(**named)
            if self.record is not None:
                self.record(probabilities)
            return out
        if func is F.multi_head_attention_forward:
            found = _multi_head(_named(_MHA, args, kwargs), self.record)
            if found is not None:
                return found
        return func(*args, **kwargs)

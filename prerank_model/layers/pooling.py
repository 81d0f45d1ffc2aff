"""Pooling of a padded sequence."""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """values [B, L, D], mask [B, L] bool -> mean of the valid rows [B, D] (zeros when none)."""
    present = mask.unsqueeze(-1).to(values.dtype)
    return (values * present).sum(1) / present.sum(1).clamp_min(1.0)

"""Field reweighting: COLD's SE and IntTower's LightSE against their formulas."""

from __future__ import annotations

import torch

from prerank_model.layers.field_weighting import LightSE, SqueezeExcitation

B, F, E = 3, 4, 5


@torch.no_grad()
def test_se_scales_each_field_by_a_sigmoid_of_all_fields() -> None:
    torch.manual_seed(0)
    layer = SqueezeExcitation(F, E)
    fields = torch.randn(B, F, E)
    out = layer(fields)
    assert out.shape == (B, F, E)
    for b in range(B):
        logits = layer.excitation.weight @ fields[b].flatten() + layer.excitation.bias
        for f in range(F):
            weight = 1.0 / (1.0 + torch.exp(-logits[f]))
            torch.testing.assert_close(out[b, f], weight * fields[b, f])
    # One field's values move every field's weight: the squeeze reads them all.
    changed = fields.clone()
    changed[:, 0] += 1.0
    assert not torch.allclose(layer(changed)[:, 1:], out[:, 1:])


@torch.no_grad()
def test_lightse_adds_a_softmax_weighted_copy_of_each_field() -> None:
    torch.manual_seed(1)
    layer = LightSE(F)
    fields = torch.randn(B, F, E)
    out = layer(fields)
    for b in range(B):
        weights = torch.softmax(layer.excitation.weight @ fields[b].mean(-1), dim=0)
        torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
        for f in range(F):
            torch.testing.assert_close(out[b, f], fields[b, f] * (1.0 + weights[f]))
    assert layer.excitation.bias is None

"""GatedCrossAttention against an explicit per-head loop."""

from __future__ import annotations

import math

import torch

from prerank_model.layers.attention import GatedCrossAttention

N, HQ, HK, D = 3, 4, 2, 5


@torch.no_grad()
def test_gated_cross_attention_equals_the_loop_formula() -> None:
    torch.manual_seed(0)
    layer = GatedCrossAttention(D)
    queries, keys = torch.randn(N, HQ, D), torch.randn(N, HK, D)
    out = layer(queries, keys)
    assert out.shape == (N, HQ, D)
    for n in range(N):
        values = [layer.value(k) for k in keys[n]]
        for i in range(HQ):
            q = queries[n, i]
            weights = torch.softmax(
                torch.stack([layer.query(q) @ layer.key(k) / math.sqrt(D) for k in keys[n]]),
                dim=0,
            )
            attended = sum(w * v for w, v in zip(weights, values, strict=True))
            gate = torch.sigmoid(layer.gate.weight @ torch.cat([q, attended]) + layer.gate.bias)
            torch.testing.assert_close(out[n, i], gate * attended + (1 - gate) * q)


@torch.no_grad()
def test_each_pair_attends_only_over_its_own_keys() -> None:
    torch.manual_seed(1)
    layer = GatedCrossAttention(D)
    queries, keys = torch.randn(N, HQ, D), torch.randn(N, HK, D)
    changed = keys.clone()
    changed[0] += 1.0
    out, out_changed = layer(queries, keys), layer(queries, changed)
    assert not torch.allclose(out[0], out_changed[0])
    torch.testing.assert_close(out[1:], out_changed[1:])

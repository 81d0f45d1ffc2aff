"""MultiHeadGatedNetwork and the layer-wise multi-head tower."""

from __future__ import annotations

import torch

from prerank_model.layers.gating import MultiHeadGatedNetwork
from prerank_model.layers.mlp import LayerwiseHeadsMLP

B, D_IN, HEADS, D = 3, 7, 2, 4


@torch.no_grad()
def test_gated_heads_are_value_times_sigmoid_gate() -> None:
    torch.manual_seed(0)
    network = MultiHeadGatedNetwork(D_IN, (8,), HEADS, D, dropout=0.0)
    inputs = torch.randn(B, D_IN)
    heads = network(inputs)
    assert heads.shape == (B, HEADS, D)
    raw = network.mlp(inputs)
    values, gates = raw[:, : HEADS * D], raw[:, HEADS * D :]
    expected = (values * torch.sigmoid(gates)).view(B, HEADS, D)
    torch.testing.assert_close(heads, expected)


@torch.no_grad()
def test_layerwise_heads_project_every_hidden_layer() -> None:
    torch.manual_seed(1)
    tower = LayerwiseHeadsMLP(D_IN, (8, 6), HEADS, D, dropout=0.0)
    inputs = torch.randn(B, D_IN)
    heads = tower(inputs)
    assert heads.shape == (B, 2 * HEADS, D)
    first = tower.layers[0](inputs)
    second = tower.layers[1](first)
    torch.testing.assert_close(heads[:, :HEADS], tower.projections[0](first).view(B, HEADS, D))
    torch.testing.assert_close(heads[:, HEADS:], tower.projections[1](second).view(B, HEADS, D))


@torch.no_grad()
def test_layerwise_heads_without_hidden_layers_project_the_input() -> None:
    torch.manual_seed(2)
    tower = LayerwiseHeadsMLP(D_IN, (), HEADS, D, dropout=0.0)
    inputs = torch.randn(B, D_IN)
    torch.testing.assert_close(tower(inputs), tower.projections[0](inputs).view(B, HEADS, D))

"""Late-interaction scorers against naive loop implementations of their formulas."""

from __future__ import annotations

import pytest
import torch

from prerank_model.layers.scorers import (
    ConcatMLPScorer,
    DotProductScorer,
    HeadwiseDotScorer,
    LightweightSimilarityScorer,
    SumMaxScorer,
    similarity_matrix,
)

N, H_U, H_V, D, R, C = 4, 3, 2, 5, 4, 3
KERNELS = ["pytorch", "exported"]


@pytest.fixture(params=KERNELS)
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the scorers with PyTorch's kernels, or with the ones an exported graph computes
    (what `torch.compiler.is_exporting()` selects while exporting)."""
    if request.param == "exported":
        monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    return str(request.param)


def naive_lss(scorer: LightweightSimilarityScorer, user: torch.Tensor, item: torch.Tensor) -> float:
    """One pair: user [H_u, d], item [H_v, d]; explicit loops over heads with the module's weights.

    S[i, j] = <u_i, v_j>; rows[i, r] = relu(sum_j W_row[r, j] S[i, j] + b_row[r]);
    cols[r, c] = relu(sum_i W_col[c, i] rows[i, r] + b_col[c]);
    logit = sum_{r, c} W_out[r * C + c] cols[r, c] + b_out.
    """
    w_row, b_row = scorer.row_fc.weight.tolist(), scorer.row_fc.bias.tolist()
    w_col, b_col = scorer.col_fc.weight.tolist(), scorer.col_fc.bias.tolist()
    w_out, b_out = scorer.output.weight[0].tolist(), scorer.output.bias.item()
    u, v = user.tolist(), item.tolist()
    s = [
        [sum(a * b for a, b in zip(u[i], v[j], strict=True)) for j in range(H_V)]
        for i in range(H_U)
    ]
    rows = [
        [max(0.0, sum(w_row[r][j] * s[i][j] for j in range(H_V)) + b_row[r]) for r in range(R)]
        for i in range(H_U)
    ]
    cols = [
        [max(0.0, sum(w_col[c][i] * rows[i][r] for i in range(H_U)) + b_col[c]) for c in range(C)]
        for r in range(R)
    ]
    return sum(w_out[r * C + c] * cols[r][c] for r in range(R) for c in range(C)) + b_out


@pytest.mark.parametrize("seed", [0, 1, 2])
@torch.no_grad()
def test_lss_equals_the_naive_loop_formula(seed: int, kernel: str) -> None:
    torch.manual_seed(seed)
    scorer = LightweightSimilarityScorer(H_U, H_V, R, C)
    user, item = torch.randn(N, H_U, D), torch.randn(N, H_V, D)
    logits = scorer(user, item)
    assert logits.shape == (N,)
    expected = torch.tensor([naive_lss(scorer, user[n], item[n]) for n in range(N)])
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("blocks", "rows", "row_dim"), [(3, 2, R), (1, 5, R), (3, 1, 3)])
@torch.no_grad()
def test_lss_in_blocks_equals_the_naive_loop_formula(blocks: int, rows: int, row_dim: int) -> None:
    """Blocks sharing their user heads give each candidate the per-pair formula's logit, with
    the column FC's rows taken in pairs or, where their count is odd, one by one."""
    torch.manual_seed(blocks * 10 + rows)
    scorer = LightweightSimilarityScorer(H_U, H_V, row_dim, C)
    block_users, items = torch.randn(blocks, H_U, D), torch.randn(blocks, rows, H_V, D)
    logits = scorer.score_blocks(block_users, items)
    assert logits.shape == (blocks, rows)
    for g in range(blocks):
        expected = scorer(block_users[g].expand(rows, H_U, D), items[g])
        torch.testing.assert_close(logits[g], expected, atol=1e-5, rtol=0)
    if row_dim == R:
        first = torch.tensor(naive_lss(scorer, block_users[0], items[0, 0]))
        torch.testing.assert_close(logits[0, 0], first, atol=1e-5, rtol=0)


def per_row_lss(
    scorer: LightweightSimilarityScorer, user: torch.Tensor, item: torch.Tensor
) -> torch.Tensor:
    """LSS as the paper writes it, each nn.Linear applied to its rows of S [N, H_u, H_v]."""
    s = torch.einsum("nid,njd->nij", user, item)
    rows = torch.relu(scorer.row_fc(s))  # [N, H_u, R]
    cols = torch.relu(scorer.col_fc(rows.transpose(1, 2)))  # [N, R, C]
    return scorer.output(cols.flatten(1)).squeeze(-1)


def test_similarity_matrix_is_every_head_pairs_dot_product_candidates_last(kernel: str) -> None:
    generator = torch.Generator().manual_seed(8)
    user = torch.randn(N, H_U, D, generator=generator)
    item = torch.randn(N, H_V, D, generator=generator)
    s = similarity_matrix(user, item)
    assert s.shape == (H_U, H_V, N)
    expected = [
        [[float(user[n, i] @ item[n, j]) for n in range(N)] for j in range(H_V)] for i in range(H_U)
    ]
    torch.testing.assert_close(s, torch.tensor(expected), atol=1e-5, rtol=0)


@pytest.mark.parametrize("seed", [0, 1])
@torch.no_grad()
def test_lss_loads_a_state_dict_and_gives_the_per_row_formulas_logits(
    seed: int, kernel: str
) -> None:
    """The same parameters as per-row nn.Linear layers: a state dict saved by a model that ran
    them loads unchanged and scores the same."""
    generator = torch.Generator().manual_seed(seed)
    saved = LightweightSimilarityScorer(H_U, H_V, R, C).state_dict()
    assert {name: tuple(t.shape) for name, t in saved.items()} == {
        "row_fc.weight": (R, H_V),
        "row_fc.bias": (R,),
        "col_fc.weight": (C, H_U),
        "col_fc.bias": (C,),
        "output.weight": (1, R * C),
        "output.bias": (1,),
    }
    scorer = LightweightSimilarityScorer(H_U, H_V, R, C)
    scorer.load_state_dict(saved)
    candidates = 500  # enough pairs for every ReLU pattern to occur
    user = torch.randn(candidates, H_U, D, generator=generator)
    item = torch.randn(candidates, H_V, D, generator=generator)
    expected = per_row_lss(scorer, user, item)
    torch.testing.assert_close(scorer(user, item), expected, atol=1e-5, rtol=0)


def test_lss_gradients_reach_both_sides_and_every_parameter() -> None:
    torch.manual_seed(9)
    scorer = LightweightSimilarityScorer(H_U, H_V, R, C)
    user = torch.randn(64, H_U, D, requires_grad=True)
    item = torch.randn(64, H_V, D, requires_grad=True)
    scorer(user, item).sum().backward()
    reference_user = user.detach().clone().requires_grad_()
    reference_item = item.detach().clone().requires_grad_()
    per_row_lss(scorer, reference_user, reference_item).sum().backward()
    for grad, expected in [(user.grad, reference_user.grad), (item.grad, reference_item.grad)]:
        assert grad is not None and expected is not None
        torch.testing.assert_close(grad, expected, atol=1e-5, rtol=0)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in scorer.parameters())


@torch.no_grad()
def test_lss_distinguishes_user_heads_from_item_heads() -> None:
    torch.manual_seed(3)
    scorer = LightweightSimilarityScorer(H_U, H_V, R, C)
    user, item = torch.randn(N, H_U, D), torch.randn(N, H_V, D)
    swapped_heads = scorer(user.flip(1), item)
    assert not torch.allclose(swapped_heads, scorer(user, item))


@torch.no_grad()
def test_dot_product_scorer_is_the_plain_dot_product() -> None:
    generator = torch.Generator().manual_seed(4)
    user, item = (
        torch.randn(N, 1, D, generator=generator),
        torch.randn(N, 1, D, generator=generator),
    )
    logits = DotProductScorer()(user, item)
    assert logits.shape == (N,)
    expected = torch.tensor([float(user[n, 0] @ item[n, 0]) for n in range(N)])
    torch.testing.assert_close(logits, expected, atol=1e-6, rtol=0)


@torch.no_grad()
def test_headwise_dot_pairs_head_h_with_head_h_only() -> None:
    generator = torch.Generator().manual_seed(5)
    user, item = (
        torch.randn(N, H_V, D, generator=generator),
        torch.randn(N, H_V, D, generator=generator),
    )
    expected = torch.tensor(
        [sum(float(user[n, h] @ item[n, h]) for h in range(H_V)) for n in range(N)]
    )
    torch.testing.assert_close(HeadwiseDotScorer()(user, item), expected, atol=1e-5, rtol=0)
    # It is the plain dot product of the flattened heads.
    flat = (user.flatten(1) * item.flatten(1)).sum(-1)
    torch.testing.assert_close(HeadwiseDotScorer()(user, item), flat, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cosine", [False, True])
@torch.no_grad()
def test_sum_max_is_the_sum_over_user_heads_of_the_best_item_head(
    cosine: bool, kernel: str
) -> None:
    generator = torch.Generator().manual_seed(6)
    user, item = (
        torch.randn(N, H_U, D, generator=generator),
        torch.randn(N, H_V, D, generator=generator),
    )

    def sim(u: torch.Tensor, v: torch.Tensor) -> float:
        return float(u @ v / (u.norm() * v.norm())) if cosine else float(u @ v)

    expected = torch.tensor(
        [sum(max(sim(u, v) for v in item[n]) for u in user[n]) for n in range(N)]
    )
    torch.testing.assert_close(SumMaxScorer(cosine)(user, item), expected, atol=1e-5, rtol=0)
    assert not list(SumMaxScorer(cosine).parameters())


@torch.no_grad()
def test_concat_mlp_reads_both_sides_and_their_order() -> None:
    torch.manual_seed(7)
    scorer = ConcatMLPScorer(H_U, H_V, D, hidden=(6,))
    user, item = torch.randn(N, H_U, D), torch.randn(N, H_V, D)
    logits = scorer(user, item)
    assert logits.shape == (N,)
    expected = scorer.mlp(torch.cat([user.reshape(N, -1), item.reshape(N, -1)], dim=-1))
    torch.testing.assert_close(logits, expected.squeeze(-1))
    assert not torch.allclose(scorer(user.flip(1), item), logits)

"""KD loss edge cases: positions with an empty stored top-k, NaN / +inf teacher log-probs and a top-k summing
above 1 are masked or reported, never silently turned into a wrong or NaN loss."""

import math

import pytest

torch = pytest.importorskip("torch")

from curate.train.kd_loss import chunked_topk_kd_loss, topk_kd_loss_from_logits, topk_stats  # noqa: E402

torch.set_num_threads(1)


def _case(n=10, h=8, v=23, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(v, h, generator=g, dtype=torch.float64, requires_grad=True)
    t_lp = torch.log_softmax(2 * torch.randn(n, v, generator=g, dtype=torch.float64), -1)
    lps, ids = t_lp.topk(k, dim=-1)
    labels = torch.randint(0, v, (n,), generator=g)
    labels[:2] = -100
    return hidden, weight, labels, ids, lps


def _loss(hidden, weight, labels, ids, lps, ce_weight=0.3, **kw):
    return chunked_topk_kd_loss(hidden, weight, labels, ids, lps, ce_weight=ce_weight, chunk_size=3, **kw)


def _reference(hidden, weight, labels, ids, lps, masked: list[int], ce_weight=0.3):
    """CE at every completion position + KL only where the teacher's top-k is usable, over all positions."""
    logits = hidden @ weight.T
    n = int((labels != -100).sum())
    keep = [i for i in range(len(labels)) if labels[i] != -100 and i not in masked]
    ce_all = torch.nn.functional.cross_entropy(logits[labels != -100], labels[labels != -100], reduction="sum")
    kl_only = topk_kd_loss_from_logits(logits[keep], labels[keep], ids[keep], lps[keep], ce_weight=0.0, num_items=1)
    return (ce_weight * ce_all + (1 - ce_weight) * kl_only) / n


def test_empty_topk_position_adds_no_kl():
    hidden, weight, labels, ids, lps = _case()
    ids, lps = ids.clone(), lps.clone()
    ids[4], lps[4] = -1, 0.0  # what encode_kd writes for a position whose top_logprobs list was empty
    got = _loss(hidden, weight, labels, ids, lps)
    ref = _reference(hidden, weight, labels, ids, lps, masked=[4])
    assert torch.allclose(got, ref, atol=1e-12), (got.item(), ref.item())
    g = torch.autograd.grad(got, (hidden, weight))
    g_ref = torch.autograd.grad(ref, (hidden, weight))
    for a, b in zip(g, g_ref):
        assert torch.allclose(a, b, atol=1e-12)
    st = topk_stats(labels, ids, lps)
    assert st["no_topk"] == 1 and st["positions"] == 8


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_invalid_teacher_logprob_is_masked_and_counted(bad):
    hidden, weight, labels, ids, lps = _case()
    lps = lps.clone()
    lps[6, 2] = bad
    got = _loss(hidden, weight, labels, ids, lps)
    assert torch.isfinite(got)
    ref = _reference(hidden, weight, labels, ids, lps, masked=[6])
    assert torch.allclose(got, ref, atol=1e-12)
    (gw,) = torch.autograd.grad(got, (weight,))
    assert torch.isfinite(gw).all()
    assert topk_stats(labels, ids, lps)["invalid"] == 1
    # the unchunked loss behaves the same
    logits = hidden @ weight.T
    assert torch.isfinite(topk_kd_loss_from_logits(logits, labels, ids, lps, ce_weight=0.3))


def test_topk_mass_above_one_is_reported():
    hidden, weight, labels, ids, lps = _case()
    lps = lps.clone()
    lps[5] = math.log(0.5)  # five ids at p=0.5 each: 2.5 in total
    st = topk_stats(labels, ids, lps)
    assert st["mass_over_1"] == 1 and abs(st["max_mass"] - 2.5) < 1e-9
    assert torch.isfinite(_loss(hidden, weight, labels, ids, lps))


def test_encode_kd_counts_and_masks_bad_positions():
    from curate.train.data import encode_kd
    from support.tiny import make_tokenizer

    tok = make_tokenizer()
    row = {"prompt": [{"role": "user", "content": "hi"}], "token_ids": [10, 11, 12, 13],
           "topk_ids": [[10, 20], [], [12, 5], [13, 6]],
           "topk_logprobs": [[-0.1, -2.5], [], [float("nan"), -1.0], [math.log(0.9), math.log(0.3)]]}
    out = encode_kd(row, tok, 64, len(tok))
    assert out["_kd_positions_empty_topk"] == 1 and out["_kd_positions_invalid_logprobs"] == 1
    assert out["_kd_positions_topk_mass_over_1"] == 1 and abs(out["_kd_max_topk_mass"] - 1.2) < 1e-9
    comp = out["kd_topk_ids"][-4:]
    assert comp[1] == [-1, -1] and comp[2] == [-1, -1] and comp[0] == [10, 20]

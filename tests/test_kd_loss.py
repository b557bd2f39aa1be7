"""The standalone chunked top-k KD loss: exactness vs a dense KL, gradients, vocab restriction."""

import pytest

torch = pytest.importorskip("torch")

from curate.train.kd_loss import (  # noqa: E402
    chunked_topk_kd_loss,
    dense_kd_loss,
    topk_kd_loss_from_logits,
)

torch.set_num_threads(1)


def _case(n=12, h=8, v=17, k=None, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=dtype, requires_grad=True)
    weight = torch.randn(v, h, generator=g, dtype=dtype, requires_grad=True)
    teacher_logits = 2 * torch.randn(n, v, generator=g, dtype=dtype)
    labels = torch.randint(0, v, (n,), generator=g)
    labels[:3] = -100  # prompt positions
    k = v if k is None else k
    t_lp = torch.log_softmax(teacher_logits, -1)
    top_lp, top_ids = t_lp.topk(k, dim=-1)
    return hidden, weight, teacher_logits, labels, top_ids, top_lp


@pytest.mark.parametrize("tau", [1.0, 2.0, 0.5])
@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_k_equal_v_matches_dense_kl(tau, chunk):
    hidden, weight, t_logits, labels, ids, lps = _case()
    dense = dense_kd_loss(hidden @ weight.T, t_logits, labels, temperature=tau, ce_weight=0.3)
    ours = chunked_topk_kd_loss(hidden, weight, labels, ids, lps, temperature=tau, ce_weight=0.3, chunk_size=chunk)
    assert torch.allclose(ours, dense, atol=1e-10, rtol=1e-9)
    g_dense = torch.autograd.grad(dense, (hidden, weight))
    g_ours = torch.autograd.grad(ours, (hidden, weight))
    for a, b in zip(g_ours, g_dense):
        assert torch.allclose(a, b, atol=1e-10, rtol=1e-8)


def test_pure_kl_is_zero_when_student_equals_teacher_and_positive_otherwise():
    hidden, weight, _, labels, _, _ = _case(k=5)
    s_lp = torch.log_softmax(hidden @ weight.T, -1).detach()
    lps, ids = s_lp.topk(5, dim=-1)
    same = chunked_topk_kd_loss(hidden, weight, labels, ids, lps, ce_weight=0.0, temperature=1.7)
    assert abs(same.item()) < 1e-10
    other = chunked_topk_kd_loss(hidden, weight, labels, ids.flip(-1), lps, ce_weight=0.0)
    assert other.item() > 0.1


def test_tail_bucket_by_hand():
    # one position, V=4, k=2: buckets {id 2, id 0, tail={1,3}}
    logits = torch.tensor([[1.0, 0.5, 2.0, -1.0]], dtype=torch.float64)
    q = torch.softmax(logits, -1)[0]
    p_top = torch.tensor([0.6, 0.3], dtype=torch.float64)
    ids = torch.tensor([[2, 0]])
    lps = p_top.log()[None]
    p = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    qb = torch.stack([q[2], q[0], q[1] + q[3]])
    expect = (p * (p / qb).log()).sum()
    got = topk_kd_loss_from_logits(logits, torch.tensor([2]), ids, lps, ce_weight=0.0)
    assert torch.allclose(got, expect, atol=1e-12)
    # padding entries (id -1) behave like a shorter top-k
    ids_p = torch.tensor([[2, 0, -1]])
    lps_p = torch.cat([lps, torch.tensor([[0.0]], dtype=torch.float64)], 1)
    got_p = topk_kd_loss_from_logits(logits, torch.tensor([2]), ids_p, lps_p, ce_weight=0.0)
    assert torch.allclose(got_p, expect, atol=1e-12)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_gradcheck_topk_with_tail(tau):
    hidden, weight, _, labels, ids, lps = _case(n=6, h=4, v=9, k=3)
    bias = torch.randn(9, dtype=torch.float64, requires_grad=True)

    def f(h, w, b):
        return chunked_topk_kd_loss(h, w, labels, ids, lps, bias=b, temperature=tau, ce_weight=0.4, chunk_size=2)

    assert torch.autograd.gradcheck(f, (hidden, weight, bias), eps=1e-6, atol=1e-6)


def test_vocab_padding_restricts_to_shared_ids():
    # student lm_head padded from 17 to 24 rows: padded rows must not take probability mass
    hidden, weight, t_logits, labels, ids, lps = _case(v=17, k=6)
    pad = torch.cat([weight.detach(), 5 * torch.ones(7, weight.shape[1], dtype=weight.dtype)]).requires_grad_()
    ref = chunked_topk_kd_loss(hidden, weight, labels, ids, lps, chunk_size=5)
    got = chunked_topk_kd_loss(hidden, pad, labels, ids, lps, chunk_size=5, vocab_limit=17)
    assert torch.allclose(ref, got, atol=1e-12)
    (gw,) = torch.autograd.grad(got, (pad,))
    assert gw[17:].abs().max().item() == 0.0
    unrestricted = chunked_topk_kd_loss(hidden, pad, labels, ids, lps, chunk_size=5)
    assert not torch.allclose(ref, unrestricted)


def test_num_items_normalises_across_accumulation():
    hidden, weight, _, labels, ids, lps = _case(k=4)
    n = int((labels != -100).sum())
    a = chunked_topk_kd_loss(hidden, weight, labels, ids, lps)
    b = chunked_topk_kd_loss(hidden, weight, labels, ids, lps, num_items=4 * n)
    assert torch.allclose(a, 4 * b)


def test_float32_close_to_dense():
    hidden, weight, t_logits, labels, ids, lps = _case(n=64, h=16, v=300, dtype=torch.float32)
    dense = dense_kd_loss(hidden @ weight.T, t_logits, labels)
    ours = chunked_topk_kd_loss(hidden, weight, labels, ids, lps, chunk_size=7)
    assert abs(ours.item() - dense.item()) < 1e-4


def test_bfloat16_inputs_match_float32():
    hidden, weight, t_logits, labels, ids, lps = _case(n=40, h=16, v=200, k=10, dtype=torch.float32)
    ref = chunked_topk_kd_loss(hidden, weight, labels, ids, lps, chunk_size=8)
    hb = hidden.detach().bfloat16().requires_grad_()
    wb = weight.detach().bfloat16().requires_grad_()
    got = chunked_topk_kd_loss(hb, wb, labels, ids, lps, chunk_size=8)
    got.backward()
    assert torch.isfinite(got) and abs(got.item() - ref.item()) < 0.05 * abs(ref.item())
    assert hb.grad.dtype == torch.bfloat16 and wb.grad.dtype == torch.bfloat16 and torch.isfinite(wb.grad.float()).all()


def test_frozen_lm_head_like_lora():
    hidden, weight, _, labels, ids, lps = _case(k=5)
    frozen = weight.detach()
    got = chunked_topk_kd_loss(hidden, frozen, labels, ids, lps, chunk_size=3)
    (gh,) = torch.autograd.grad(got, (hidden,))
    ref = chunked_topk_kd_loss(hidden, weight, labels, ids, lps, chunk_size=3)
    (gh_ref,) = torch.autograd.grad(ref, (hidden,))
    assert torch.allclose(gh, gh_ref, atol=1e-12)

"""Offline top-k knowledge-distillation loss, chunked over positions.

The teacher is known only through its stored top-k token ids and their raw (temperature 1)
log-probabilities at each completion position. Per position, the teacher and the student are
compared on k + 1 buckets: the k stored ids plus one *tail* bucket holding the remaining mass
(teacher: ``1 - sum(exp(topk_logprobs))``; student: its softmax mass outside the k ids).
Temperature ``tau`` is applied to that (k + 1)-way distribution on both sides; the KL term is
scaled by ``tau**2`` (Hinton et al.) and mixed with the usual cross-entropy::

    loss = ce_weight * CE(student, label) + (1 - ce_weight) * tau^2 * KL(teacher || student)

summed over completion positions (labels != -100) and divided by ``num_items`` (the number of
completion tokens across the gradient-accumulation window; default: the ones in this call).
When k covers the whole vocabulary the tail is empty and the loss equals the dense full-vocabulary
KL for any tau.

Memory: ``chunked_topk_kd_loss`` takes the student's last hidden states and the lm_head weight,
projects ``chunk_size`` positions at a time and computes their gradients inside the forward
pass (the approach of Liger-Kernel's fused linear cross-entropy), so the [T, V] float32 logits
never exist beyond one chunk, in the forward or the backward pass. Prompt positions are skipped
before projecting.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
_NEG = -1e9  # "minus infinity" that keeps gradients finite


def _chunk_terms(
    logits: torch.Tensor,
    labels: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_logprobs: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position (kl, ce) for logits [n, V] (float32), labels [n], topk_ids/logprobs [n, k].

    Entries with ``topk_ids < 0`` are padding (a position may carry fewer than k entries). A position with
    no entry, or with a NaN / +inf teacher log-prob, has no KL term (kl = 0; its CE still counts).
    """
    if logits.dtype != torch.float64:
        logits = logits.float()
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)  # [n, 1]
    ce = lse.squeeze(1) - logits.gather(1, labels.clamp(min=0).unsqueeze(1)).squeeze(1)

    valid = topk_ids >= 0
    with torch.no_grad():
        lp = topk_logprobs.to(logits.dtype)
        bad = valid & (torch.isnan(lp) | (lp == float("inf")))
        # positions without a usable teacher distribution (empty top-k list, NaN / +inf log-prob) get no KL term:
        # they are given a one-hot stand-in on the label (finite values and gradients) and masked below
        use = valid.any(1) & ~bad.any(1)
        if not bool(use.all()):
            stand_in = torch.zeros_like(valid)
            stand_in[:, 0] = True
            valid = torch.where(use[:, None], valid, stand_in)
            topk_ids = torch.where(use[:, None], topk_ids, labels.clamp(min=0)[:, None].expand_as(topk_ids))
            lp = torch.where(use[:, None], lp, torch.zeros_like(lp))
    # padding entries point at the row's first id, which is masked anyway (no scatter conflicts)
    ids = torch.where(valid, topk_ids, topk_ids[:, :1].clamp(min=0))
    s_top = logits.gather(1, ids) - lse  # student log q over the k ids
    s_top = torch.where(valid, s_top, torch.full_like(s_top, _NEG))
    s_tail = torch.logsumexp(logits.scatter(1, ids, _NEG), dim=-1, keepdim=True) - lse
    s_bucket = torch.cat([s_top, s_tail], dim=1)  # [n, k+1], sums to 1 in prob space

    with torch.no_grad():
        t_top = torch.where(valid, lp, torch.full_like(lp, float("-inf")))
        # a top-k summing above 1 (rounding, or a broken teacher) leaves no tail; topk_stats reports it
        t_rest = (1.0 - t_top.exp().sum(1, keepdim=True)).clamp(min=0.0)
        # k covers the whole vocabulary: the tail is empty, whatever rounding left in 1 - sum(p)
        t_rest = torch.where(valid.sum(1, keepdim=True) >= logits.shape[1], torch.zeros_like(t_rest), t_rest)
        t_bucket = torch.cat([t_top, t_rest.log()], dim=1)
        # renormalise (stored logprobs are rounded) and temper the (k+1)-way distribution
        t_bucket = torch.log_softmax(t_bucket / temperature, dim=1)
        p_t = t_bucket.exp() * use[:, None].to(logits.dtype)
        neg_entropy = torch.xlogy(p_t, p_t).sum(1)
    if temperature != 1.0:
        s_bucket = torch.log_softmax(s_bucket / temperature, dim=1)
    kl = neg_entropy - (p_t * s_bucket).sum(1)
    return kl, ce


class _ChunkedTopKKD(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, topk_ids, topk_logprobs, temperature, ce_weight, chunk_size, vocab_limit, denom):
        need_h, need_w = hidden.requires_grad, weight.requires_grad
        need_b = bias is not None and bias.requires_grad
        grad_h = torch.zeros_like(hidden) if need_h else None
        acc = torch.float64 if hidden.dtype == torch.float64 else torch.float32
        grad_w = torch.zeros_like(weight, dtype=acc) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=acc) if need_b else None
        rows = torch.nonzero(labels != IGNORE_INDEX).squeeze(1)
        w_full = weight.detach()
        total = hidden.new_zeros((), dtype=acc)
        kl_sum = hidden.new_zeros((), dtype=acc)
        ce_sum = hidden.new_zeros((), dtype=acc)
        kd_scale = (1.0 - ce_weight) * temperature * temperature
        w = w_full[:vocab_limit] if vocab_limit else w_full
        b = None
        if bias is not None:
            b = bias.detach()[:vocab_limit] if vocab_limit else bias.detach()
        gw_view = None if grad_w is None else (grad_w[:vocab_limit] if vocab_limit else grad_w)
        gb_view = None if grad_b is None else (grad_b[:vocab_limit] if vocab_limit else grad_b)
        for start in range(0, rows.numel(), chunk_size):
            idx = rows[start : start + chunk_size]
            h = hidden.detach()[idx]
            with torch.enable_grad():
                logits = F.linear(h, w, b).to(acc).requires_grad_(True)
                kl, ce = _chunk_terms(logits, labels[idx], topk_ids[idx], topk_logprobs[idx], temperature)
                loss = (ce_weight * ce + kd_scale * kl).sum()
                (dlogits,) = torch.autograd.grad(loss, (logits,))
            # the lm_head's backward by hand, accumulated in place (no [V, H] temporary per chunk)
            if need_h:
                grad_h.index_add_(0, idx, (dlogits.to(w.dtype) @ w).to(grad_h.dtype))
            if need_w:
                gw_view.addmm_(dlogits.t(), h.to(acc))
            if need_b:
                gb_view += dlogits.sum(0)
            del dlogits, logits
            total += loss.detach()
            kl_sum += kl.detach().sum()
            ce_sum += ce.detach().sum()
        ctx.save_for_backward(*(g for g in (grad_h, grad_w, grad_b) if g is not None))
        ctx.flags = (need_h, need_w, need_b)
        ctx.denom = denom
        ctx.mark_non_differentiable(kl_sum, ce_sum)
        return total / denom, kl_sum, ce_sum

    @staticmethod
    def backward(ctx, grad_out, _gkl, _gce):
        saved = list(ctx.saved_tensors)
        need_h, need_w, need_b = ctx.flags
        scale = grad_out / ctx.denom
        out = []
        for need in (need_h, need_w, need_b):
            g = saved.pop(0) if need else None
            out.append(None if g is None else g * scale.to(g.dtype))
        gh, gw, gb = out
        return gh, gw, gb, None, None, None, None, None, None, None, None


def chunked_topk_kd_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_logprobs: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    temperature: float = 1.0,
    ce_weight: float = 0.5,
    chunk_size: int = 1024,
    num_items: int | torch.Tensor | None = None,
    vocab_limit: int | None = None,
    return_parts: bool = False,
):
    """Top-k KD + CE loss from hidden states [N, H] and the lm_head weight [V, H].

    ``hidden[i]`` predicts ``labels[i]`` (already shifted); ``topk_ids``/``topk_logprobs`` [N, k]
    hold the teacher's top-k at position i (ignored where ``labels == -100``). ``vocab_limit``
    restricts the student's softmax to ids ``< vocab_limit`` (vocab-size padding, e.g. 151,936 vs
    152,064 rows). Returns the loss, or ``(loss, kl_sum, ce_sum)`` with ``return_parts``.
    """
    hidden = hidden.reshape(-1, hidden.shape[-1])
    labels = labels.reshape(-1)
    topk_ids = topk_ids.reshape(labels.shape[0], -1).long()
    topk_logprobs = topk_logprobs.reshape(labels.shape[0], -1)
    if vocab_limit is not None and vocab_limit >= weight.shape[0]:
        vocab_limit = None
    n_valid = int((labels != IGNORE_INDEX).sum())
    denom = num_items if num_items is not None else max(n_valid, 1)
    if isinstance(denom, torch.Tensor):
        denom = denom.to(hidden.device)
    loss, kl_sum, ce_sum = _ChunkedTopKKD.apply(
        hidden, weight, bias, labels, topk_ids, topk_logprobs,
        float(temperature), float(ce_weight), int(chunk_size), vocab_limit, denom,
    )
    return (loss, kl_sum, ce_sum) if return_parts else loss


def topk_stats(labels: torch.Tensor, topk_ids: torch.Tensor, topk_logprobs: torch.Tensor, tol: float = 1e-3) -> dict:
    """Counts over the completion positions (labels != -100) of a batch: ``positions``, ``no_topk`` (no entry:
    trained with CE only), ``invalid`` (a NaN / +inf log-prob: CE only), ``mass_over_1`` (top-k probabilities
    summing above 1 + tol; the tail is then empty) and ``max_mass``."""
    with torch.no_grad():
        labels = labels.reshape(-1)
        keep = labels != IGNORE_INDEX
        ids = topk_ids.reshape(labels.shape[0], -1)[keep]
        lp = topk_logprobs.reshape(labels.shape[0], -1)[keep].double()
        valid = ids >= 0
        bad = (valid & (torch.isnan(lp) | (lp == float("inf")))).any(1)
        empty = ~valid.any(1)
        mass = torch.where(valid & ~torch.isnan(lp), lp.exp(), torch.zeros_like(lp)).sum(1)
        mass = torch.where(bad | empty, torch.zeros_like(mass), mass)
        return {
            "positions": int(keep.sum()), "no_topk": int(empty.sum()), "invalid": int((bad & ~empty).sum()),
            "mass_over_1": int((mass > 1 + tol).sum()), "max_mass": float(mass.max()) if mass.numel() else 0.0,
        }


def topk_kd_loss_from_logits(
    logits: torch.Tensor,
    labels: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_logprobs: torch.Tensor,
    *,
    temperature: float = 1.0,
    ce_weight: float = 0.5,
    num_items: int | None = None,
) -> torch.Tensor:
    """The same loss from ready logits [N, V] (unchunked; for small inputs and tests)."""
    logits = logits.reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1)
    keep = labels != IGNORE_INDEX
    kl, ce = _chunk_terms(
        logits[keep], labels[keep], topk_ids.reshape(labels.shape[0], -1)[keep].long(),
        topk_logprobs.reshape(labels.shape[0], -1)[keep], temperature,
    )
    denom = num_items if num_items is not None else max(int(keep.sum()), 1)
    return (ce_weight * ce + (1 - ce_weight) * temperature**2 * kl).sum() / denom


def dense_kd_loss(
    logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 1.0,
    ce_weight: float = 0.5,
) -> torch.Tensor:
    """Reference: full-vocabulary forward KL(softmax(t/tau) || softmax(s/tau)) mixed with CE, mean over tokens."""
    dt = torch.promote_types(logits.dtype, torch.float32)
    logits = logits.reshape(-1, logits.shape[-1]).to(dt)
    teacher_logits = teacher_logits.reshape(-1, teacher_logits.shape[-1]).to(dt)
    labels = labels.reshape(-1)
    keep = labels != IGNORE_INDEX
    s, t, y = logits[keep], teacher_logits[keep], labels[keep]
    log_q = torch.log_softmax(s / temperature, dim=-1)
    log_p = torch.log_softmax(t / temperature, dim=-1)
    kl = F.kl_div(log_q, log_p, reduction="sum", log_target=True)
    ce = F.cross_entropy(s, y, reduction="sum")
    return (ce_weight * ce + (1 - ce_weight) * temperature**2 * kl) / max(int(keep.sum()), 1)

"""Offline KD trainer: TRL's SFTTrainer (model/PEFT setup, optimizer, checkpoints, logging) with the
loss replaced by the chunked top-k KD loss over the teacher's stored ``topk_ids``/``topk_logprobs``.

The student runs its own forward with the lm_head's forward replaced by the loss: ``chunked_topk_kd_loss``
projects the last hidden states through the lm_head weight a chunk of positions at a time, so the full
[B, T, V] logits are never built, and sharded parameters (ZeRO-3, FSDP) are gathered by the forward's hooks.
"""

from __future__ import annotations

import torch
from accelerate.utils import is_peft_model
from trl import SFTConfig, SFTTrainer

from ..errors import RecipeError
from .common import CurriculumMixin, peft_config, training_kwargs
from .config import TrainRecipe
from .data import KDCollator, _finish, check_tokenizer, encode_kd, require_kd_columns
from .kd_loss import chunked_topk_kd_loss, topk_stats


def _causal_lm(model):
    from accelerate.utils import extract_model_from_parallel

    model = extract_model_from_parallel(model)  # DDP / FSDP / DeepSpeed wrappers
    if is_peft_model(model):
        model = model.base_model.model
    return model


def vocab_limit_for(model, tokenizer) -> int:
    """Ids the student may assign probability to: the real tokenizer ids (lm_head rows beyond
    ``len(tokenizer)`` are padding, e.g. 152,064 rows for a 151,665-token vocabulary)."""
    rows = _causal_lm(model).get_output_embeddings().weight.shape[0]
    return min(rows, len(tokenizer))


class OfflineKDTrainer(CurriculumMixin, SFTTrainer):
    """SFTTrainer whose loss is ``ce_weight * CE + (1 - ce_weight) * tau^2 * KL_topk+tail``."""

    loss_is_scaled_for_ga = True  # we divide by num_items_in_batch (completion tokens across accumulation)

    def __init__(self, *args, kd_temperature: float = 1.0, kd_ce_weight: float = 0.5, kd_chunk_size: int = 1024, **kwargs):
        super().__init__(*args, **kwargs)
        self.kd_temperature = kd_temperature
        self.kd_ce_weight = kd_ce_weight
        self.kd_chunk_size = kd_chunk_size
        self.model_accepts_loss_kwargs = True  # makes the Trainer count num_items_in_batch
        self._vocab_limit = vocab_limit_for(self.model, self.processing_class)
        lm = _causal_lm(self.model)
        if getattr(lm.config.get_text_config(), "final_logit_softcapping", None):
            raise RecipeError("method kd: students with final_logit_softcapping are not supported by the top-k KD loss")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        denom = num_items_in_batch
        if denom is None:
            denom = int(labels[:, 1:].ne(-100).sum())
        loss, kl_sum, ce_sum = kd_loss_through_model(
            model, inputs, temperature=self.kd_temperature, ce_weight=self.kd_ce_weight,
            chunk_size=self.kd_chunk_size, num_items=denom, vocab_limit=self._vocab_limit,
        )
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        n = max(int(labels[:, 1:].ne(-100).sum()), 1)
        mode = "train" if model.training else "eval"
        self._metrics[mode]["kd_kl"].append(float(kl_sum) / n)
        self._metrics[mode]["kd_ce"].append(float(ce_sum) / n)
        st = topk_stats(labels[:, 1:], inputs["kd_topk_ids"][:, 1:], inputs["kd_topk_logprobs"][:, 1:])
        self._metrics[mode]["kd_positions_without_topk"].append(float(st["no_topk"] + st["invalid"]))
        return (loss, {"loss": loss}) if return_outputs else loss


def kd_loss_through_model(model, inputs, *, temperature, ce_weight, chunk_size, num_items, vocab_limit=None):
    """The chunked top-k KD loss computed *inside* the model's forward: the lm_head's forward is replaced, for
    this call, by the loss over its input hidden states and its weight. The model runs through its own (possibly
    wrapped) ``__call__``, so DeepSpeed ZeRO-3 and FSDP gather the sharded parameters (the embeddings, the
    lm_head) as for any forward, and the gradients reach them through the usual hooks; reading
    ``lm_head.weight`` outside the forward would see a shard. Returns (loss, kl_sum, ce_sum)."""
    labels = inputs["labels"]
    head = _causal_lm(model).get_output_embeddings()
    parts = {}

    def loss_head(hidden):
        loss, kl_sum, ce_sum = chunked_topk_kd_loss(
            hidden[:, :-1], head.weight, labels[:, 1:], inputs["kd_topk_ids"][:, 1:], inputs["kd_topk_logprobs"][:, 1:],
            bias=head.bias, temperature=temperature, ce_weight=ce_weight, chunk_size=chunk_size,
            num_items=num_items, vocab_limit=vocab_limit, return_parts=True,
        )
        parts["kl"], parts["ce"] = kl_sum, ce_sum
        return loss.reshape(1, 1, 1).clone()  # stands in for the logits: the model returns it as `logits`

    head.forward = loss_head
    try:
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
    finally:
        del head.forward  # back to the class's forward
    return out.logits.reshape(()), parts["kl"], parts["ce"]


def kd_dataset(ds, tokenizer, recipe: TrainRecipe, vocab_size: int, where: str = "dataset"):
    """Encoded offline-KD rows and their stats (rows cut/dropped for length, teacher top-k positions that were
    empty, invalid or summed above 1). Checks the data before any model loads."""
    require_kd_columns(ds, where)
    if recipe.kd.check_tokenizer:
        check_tokenizer(ds, tokenizer, where)
    enc = ds.map(
        lambda r: encode_kd(r, tokenizer, recipe.max_length, vocab_size, where, recipe.truncation),
        remove_columns=ds.column_names,
    )
    max_mass = max(enc["_kd_max_topk_mass"], default=0.0)
    sums = ("_kd_positions_empty_topk", "_kd_positions_invalid_logprobs", "_kd_positions_topk_mass_over_1")
    enc, stats = _finish(enc, len(ds), recipe.max_length, recipe.truncation, where, extra_sums=sums)
    enc = enc.filter(lambda r: any(x != -100 for x in r["labels"]))
    stats["kd_max_topk_mass"] = round(float(max_mass), 6)
    return enc, stats


def build_kd_trainer(recipe: TrainRecipe, model, tokenizer, train_ds, eval_ds=None, *, curriculum: bool, callbacks=None):
    """``train_ds``/``eval_ds`` come from ``kd_dataset``."""
    args = SFTConfig(
        **training_kwargs(recipe, SFTConfig, has_eval=eval_ds is not None),
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
    )
    trainer = OfflineKDTrainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
        data_collator=KDCollator(tokenizer.pad_token_id), peft_config=peft_config(recipe), callbacks=callbacks,
        kd_temperature=recipe.kd.temperature, kd_ce_weight=recipe.kd.ce_weight, kd_chunk_size=recipe.kd.chunk_size,
    )
    trainer.curriculum = curriculum
    trainer.warmup_ratio = recipe.optim.warmup_ratio
    return trainer


@torch.no_grad()
def teacher_topk(model, input_ids: torch.Tensor, prompt_len: int, k: int) -> tuple[list[list[int]], list[list[float]]]:
    """Top-k raw (T=1) log-probs of ``model`` at each completion token of one sequence, in the stored format
    (used by tests and the toy benchmark to produce what the sampling stage stores)."""
    logits = model(input_ids=input_ids[None]).logits[0, prompt_len - 1 : -1].float()
    lps, ids = torch.log_softmax(logits, -1).topk(k, dim=-1)
    return ids.tolist(), lps.tolist()

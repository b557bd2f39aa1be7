"""Offline KD trainer: TRL's SFTTrainer (model/PEFT setup, optimizer, checkpoints, logging) with the
loss replaced by the chunked top-k KD loss over the teacher's stored ``topk_ids``/``topk_logprobs``.

The student's backbone gives the last hidden states; ``chunked_topk_kd_loss`` projects them through the
lm_head a chunk of positions at a time, so the full [B, T, V] logits are never built.
"""

from __future__ import annotations

import torch
from accelerate.utils import is_peft_model
from trl import SFTConfig, SFTTrainer

from ..errors import RecipeError, SourceError
from .common import CurriculumMixin, peft_config, training_kwargs
from .config import TrainRecipe
from .data import KDCollator, check_tokenizer, encode_kd
from .kd_loss import chunked_topk_kd_loss


def _causal_lm(model):
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
        lm = _causal_lm(model)
        hidden = lm.base_model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False
        ).last_hidden_state
        head = lm.get_output_embeddings()
        denom = num_items_in_batch
        if denom is None:
            denom = int(labels[:, 1:].ne(-100).sum())
        loss, kl_sum, ce_sum = chunked_topk_kd_loss(
            hidden[:, :-1], head.weight, labels[:, 1:],
            inputs["kd_topk_ids"][:, 1:], inputs["kd_topk_logprobs"][:, 1:],
            bias=head.bias, temperature=self.kd_temperature, ce_weight=self.kd_ce_weight,
            chunk_size=self.kd_chunk_size, num_items=denom, vocab_limit=self._vocab_limit, return_parts=True,
        )
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        n = max(int(labels[:, 1:].ne(-100).sum()), 1)
        mode = "train" if model.training else "eval"
        self._metrics[mode]["kd_kl"].append(float(kl_sum) / n)
        self._metrics[mode]["kd_ce"].append(float(ce_sum) / n)
        return (loss, {"loss": loss}) if return_outputs else loss


def kd_dataset(ds, tokenizer, recipe: TrainRecipe, vocab_size: int, where: str = "dataset"):
    if recipe.kd.check_tokenizer:
        check_tokenizer(ds, tokenizer, where)
    missing = [c for c in ("token_ids", "topk_ids", "topk_logprobs") if c not in ds.column_names]
    if missing:
        raise SourceError(f"{where}: method kd needs columns {', '.join(missing)} (sample with logprobs enabled)")
    enc = ds.map(
        lambda r: encode_kd(r, tokenizer, recipe.max_length, vocab_size, where),
        remove_columns=ds.column_names,
    )
    return enc.filter(lambda r: any(x != -100 for x in r["labels"]))


def build_kd_trainer(recipe: TrainRecipe, model, tokenizer, ds, *, curriculum: bool, where: str = "dataset", callbacks=None):
    train_ds = kd_dataset(ds, tokenizer, recipe, vocab_limit_for(model, tokenizer), where)
    args = SFTConfig(
        **training_kwargs(recipe),
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
    )
    trainer = OfflineKDTrainer(
        model=model, args=args, train_dataset=train_ds, processing_class=tokenizer,
        data_collator=KDCollator(tokenizer.pad_token_id), peft_config=peft_config(recipe), callbacks=callbacks,
        kd_temperature=recipe.kd.temperature, kd_ce_weight=recipe.kd.ce_weight, kd_chunk_size=recipe.kd.chunk_size,
    )
    trainer.curriculum = curriculum
    return trainer


@torch.no_grad()
def teacher_topk(model, input_ids: torch.Tensor, prompt_len: int, k: int) -> tuple[list[list[int]], list[list[float]]]:
    """Top-k raw (T=1) log-probs of ``model`` at each completion token of one sequence, in the stored format
    (used by tests and the toy benchmark to produce what the sampling stage stores)."""
    logits = model(input_ids=input_ids[None]).logits[0, prompt_len - 1 : -1].float()
    lps, ids = torch.log_softmax(logits, -1).topk(k, dim=-1)
    return ids.tolist(), lps.tolist()

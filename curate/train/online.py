"""Online logit KD: a teacher model beside the student (same tokenizer family), through TRL's
``GKDTrainer`` (experimental): forward KL (beta=0), reverse KL (beta=1) or generalised JSD (beta),
on the dataset's completions (``lmbda=0``) or partly on student-generated ones (``lmbda>0``).
Rows are encoded like SFT's (``data.chat_dataset``: reasoning kept per row, one truncation policy).

One change to TRL's loss: GKDTrainer applies ``temperature`` to sampling only; here the divergence
is computed on tempered distributions too, scaled by tau^2 like the offline loss.
"""

from __future__ import annotations

import torch
from trl.experimental.gkd import GKDConfig, GKDTrainer

from ..errors import RecipeError
from .common import CurriculumMixin, peft_config, torch_dtype, training_kwargs
from .config import TrainRecipe
from .data import ChatCollator


class CurateGKDTrainer(CurriculumMixin, GKDTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        student = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        self.teacher_model.eval()
        with torch.no_grad():
            teacher = self.teacher_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        tau = self.temperature
        n = len(self.processing_class)  # real ids only: lm_head padding rows take no probability mass
        loss = self.generalized_jsd_loss(
            student_logits=student.logits[:, :-1, :n], teacher_logits=teacher.logits[:, :-1, :n],
            labels=inputs["labels"][:, 1:], beta=self.beta, temperature=tau, num_items_in_batch=num_items_in_batch,
        ) * (tau * tau)
        return (loss, student) if return_outputs else loss


def load_teacher(recipe: TrainRecipe):
    from transformers import AutoModelForCausalLM

    name = recipe.online.teacher
    try:
        return AutoModelForCausalLM.from_pretrained(
            name, dtype=torch_dtype(recipe.student.dtype), trust_remote_code=recipe.student.trust_remote_code
        )
    except Exception as e:
        raise RecipeError(f"online.teacher: cannot load {name!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def build_online_trainer(recipe: TrainRecipe, model, tokenizer, train_ds, eval_ds=None, *, curriculum: bool, callbacks=None,
                         teacher=None):
    """``train_ds``/``eval_ds`` come from ``chat_dataset`` (pre-tokenized, the truncation policy applied;
    ``ChatCollator`` batches them); ``teacher`` from ``load_teacher``."""
    teacher = teacher if teacher is not None else load_teacher(recipe)
    t_vocab = teacher.config.get_text_config().vocab_size
    s_vocab = model.config.get_text_config().vocab_size
    if t_vocab != s_vocab:
        if min(t_vocab, s_vocab) < len(tokenizer):
            raise RecipeError(
                f"online.teacher: vocab size {t_vocab} vs the student's {s_vocab} (tokenizer: {len(tokenizer)} ids); "
                "online KD needs one tokenizer family"
            )
        # lm_head padding only (e.g. 152,064 vs 151,936 rows over 151,665 ids): give the teacher the student's
        # row count (TRL's GKD requires equal sizes); the loss only looks at the tokenizer's ids anyway
        teacher.resize_token_embeddings(s_vocab, mean_resizing=False)
    o = recipe.online
    args = GKDConfig(
        **training_kwargs(recipe, GKDConfig, has_eval=eval_ds is not None),
        temperature=o.temperature, lmbda=o.lmbda, beta=o.trl_beta(), max_new_tokens=o.max_new_tokens,
    )
    trainer = CurateGKDTrainer(
        model=model, teacher_model=teacher, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
        processing_class=tokenizer, peft_config=peft_config(recipe), callbacks=callbacks,
        data_collator=ChatCollator(tokenizer.pad_token_id),
    )
    trainer.curriculum = curriculum
    trainer.warmup_ratio = recipe.optim.warmup_ratio
    return trainer

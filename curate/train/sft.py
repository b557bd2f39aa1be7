"""SFT through TRL's SFTTrainer: prompt-completion rows, loss on the completion only
(``completion_only_loss``), the <think> reasoning kept in the trained text, curriculum order."""

from __future__ import annotations

from trl import SFTConfig, SFTTrainer

from ..errors import RecipeError
from .common import CurriculumMixin, peft_config, training_kwargs
from .config import TrainRecipe


class CurateSFTTrainer(CurriculumMixin, SFTTrainer):
    pass


def build_sft_trainer(recipe: TrainRecipe, model, tokenizer, train_ds, eval_ds=None, *, curriculum: bool, callbacks=None):
    """``train_ds``/``eval_ds`` come from ``data.sft_dataset`` (pre-tokenized ``input_ids`` + ``completion_mask``:
    TRL builds the labels from the mask, packs when asked, and has nothing left to truncate)."""
    if recipe.packing and curriculum:
        raise RecipeError(
            "packing: the dataset is in curriculum order (curriculum_rank) and packing would mix rows; "
            "set curriculum.mode: off to pack, or packing: false"
        )
    args = SFTConfig(
        **training_kwargs(recipe, SFTConfig, has_eval=eval_ds is not None),
        completion_only_loss=True,
        packing=recipe.packing,
        padding_free=recipe.padding_free,
    )
    trainer = CurateSFTTrainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
        peft_config=peft_config(recipe), callbacks=callbacks,
    )
    trainer.curriculum = curriculum
    trainer.warmup_ratio = recipe.optim.warmup_ratio
    return trainer

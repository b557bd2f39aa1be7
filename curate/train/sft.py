"""SFT through TRL's SFTTrainer: prompt-completion rows, loss on the completion only
(``completion_only_loss``), the <think> reasoning kept in the trained text, curriculum order."""

from __future__ import annotations

from trl import SFTConfig, SFTTrainer

from .common import CurriculumMixin, peft_config, training_kwargs
from .config import TrainRecipe
from .data import sft_dataset


class CurateSFTTrainer(CurriculumMixin, SFTTrainer):
    pass


def build_sft_trainer(recipe: TrainRecipe, model, tokenizer, ds, *, curriculum: bool, where: str = "dataset", callbacks=None):
    train_ds, fmt = sft_dataset(ds, tokenizer, where)
    args = SFTConfig(
        **training_kwargs(recipe),
        completion_only_loss=True,
        packing=recipe.packing and not curriculum,
        padding_free=recipe.padding_free,
    )
    trainer = CurateSFTTrainer(
        model=model, args=args, train_dataset=train_ds, processing_class=tokenizer,
        peft_config=peft_config(recipe), callbacks=callbacks,
    )
    trainer.curriculum = curriculum
    trainer.data_format = fmt
    return trainer

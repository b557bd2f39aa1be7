"""Shared pieces of the trainers: student/tokenizer loading (transformers), LoRA/QLoRA configs (peft),
TrainingArguments from the recipe, and the curriculum sampler."""

from __future__ import annotations

from pathlib import Path

from ..errors import MissingExtraError, RecipeError, require
from .config import TrainRecipe

require("torch", "train")
require("transformers", "train")
require("trl", "train")
require("peft", "train")

import torch  # noqa: E402
from torch.utils.data import SequentialSampler  # noqa: E402


def bf16_ok() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def torch_dtype(name: str):
    if name == "auto":
        return torch.bfloat16 if bf16_ok() else torch.float32
    return getattr(torch, name)


def load_tokenizer(recipe: TrainRecipe, base_dir: Path | None = None):
    from transformers import AutoTokenizer

    st = recipe.student
    src = st.tokenizer or st.model
    try:
        tok = AutoTokenizer.from_pretrained(src, trust_remote_code=st.trust_remote_code)
    except Exception as e:
        raise RecipeError(f"student.tokenizer: cannot load tokenizer {src!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if st.chat_template:
        p = Path(st.chat_template)
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        if not p.exists():
            raise RecipeError(f"student.chat_template: no such file {p}")
        tok.chat_template = p.read_text()
    if not getattr(tok, "chat_template", None):
        raise RecipeError(f"student.tokenizer: {src!r} has no chat template; set student.chat_template")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_student(recipe: TrainRecipe):
    from transformers import AutoModelForCausalLM

    st = recipe.student
    kwargs = {"dtype": torch_dtype(st.dtype), "trust_remote_code": st.trust_remote_code}
    if st.attn_implementation:
        kwargs["attn_implementation"] = st.attn_implementation
    if recipe.lora is not None and recipe.lora.quantize_4bit:
        if not torch.cuda.is_available():
            raise RecipeError("lora.quantize_4bit: QLoRA needs a CUDA device")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise MissingExtraError("lora.quantize_4bit needs bitsandbytes: pip install bitsandbytes") from None
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if bf16_ok() else torch.float16,
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(st.model, **kwargs)
    except Exception as e:
        raise RecipeError(f"student.model: cannot load {st.model!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if recipe.lora is not None and recipe.lora.quantize_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=recipe.gradient_checkpointing)
    return model


def peft_config(recipe: TrainRecipe):
    if recipe.lora is None:
        return None
    from peft import LoraConfig

    lc = recipe.lora
    return LoraConfig(
        r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=lc.target_modules,
        task_type="CAUSAL_LM", bias="none",
    )


def _fields(config_cls) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(config_cls)}


def checkpointing_kwargs(config_cls, enabled: bool) -> dict:
    """Activation (gradient) checkpointing under the name this transformers version uses:
    ``activation_checkpointing`` (transformers >= 5.20; ``gradient_checkpointing`` is its deprecated alias)
    or ``gradient_checkpointing`` (5.16-5.19, the range vLLM's CPU build pins)."""
    fields = _fields(config_cls)
    name = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    if name not in fields:  # pragma: no cover - neither name: an unsupported transformers
        raise RecipeError("gradient_checkpointing: this transformers version has no checkpointing argument")
    return {name: enabled}


def precision_kwargs(recipe: TrainRecipe) -> dict:
    """bf16 / fp16 mixed precision from ``mixed_precision`` (auto: bf16 where the GPU has it, fp16 on an older
    CUDA GPU with float32 weights, none on CPU)."""
    mp, dtype = recipe.mixed_precision, recipe.student.dtype
    cuda = torch.cuda.is_available()
    if mp == "auto":
        if bf16_ok() and dtype in ("auto", "bfloat16"):
            mp = "bf16"
        elif cuda and not bf16_ok() and dtype in ("auto", "float32", "float16"):
            mp = "fp16"
        else:
            mp = "no"
    if mp == "fp16" and not cuda:
        raise RecipeError("mixed_precision: fp16 needs a CUDA device (use no or bf16 on CPU)")
    if mp == "fp16" and dtype == "float16" and recipe.lora is None:
        raise RecipeError("mixed_precision: fp16 with student.dtype float16 and full fine-tuning cannot unscale fp16 "
                          "gradients; use student.dtype auto/float32 (fp32 master weights) or LoRA")
    return {"bf16": mp == "bf16", "fp16": mp == "fp16"}


def training_kwargs(recipe: TrainRecipe, config_cls=None, has_eval: bool = False) -> dict:
    """TrainingArguments fields shared by every trainer (TRL configs subclass TrainingArguments),
    with the names of the installed transformers (``config_cls`` is the config class to check)."""
    from transformers import TrainingArguments

    config_cls = config_cls or TrainingArguments
    o = recipe.optim
    kw = dict(
        output_dir=recipe.output_dir,
        run_name=recipe.run_name or Path(recipe.output_dir).name,
        num_train_epochs=recipe.epochs,
        max_steps=recipe.max_steps,
        per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.grad_accum,
        learning_rate=o.lr,
        weight_decay=o.weight_decay,
        lr_scheduler_type=o.schedule,
        lr_scheduler_kwargs=o.scheduler_kwargs(),
        warmup_steps=0,  # set from optim.warmup_ratio once the step count is known (WarmupMixin)
        max_grad_norm=o.max_grad_norm,
        optim=o.name,
        seed=recipe.seed,
        data_seed=recipe.seed,
        logging_steps=recipe.logging_steps,
        save_steps=recipe.save_steps,
        save_total_limit=recipe.save_total_limit,
        report_to=recipe.report_to or "none",
        **precision_kwargs(recipe),
        **checkpointing_kwargs(config_cls, recipe.gradient_checkpointing),
        max_length=recipe.max_length,
        shuffle_dataset=False,  # order is decided by the sampler (curriculum) or the Trainer's RandomSampler
        dataset_num_proc=None,
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
    )
    e = recipe.eval
    if has_eval and e is not None:
        kw.update(
            eval_strategy="steps", eval_steps=e.steps, save_strategy="steps", save_steps=e.steps,
            load_best_model_at_end=e.load_best, metric_for_best_model=e.metric, greater_is_better=e.greater_is_better,
        )
    missing = sorted(set(kw) - _fields(config_cls))
    if missing:  # a transformers/TRL version this code was not tested with
        raise RecipeError(f"{config_cls.__name__} lacks {', '.join(missing)}: install a supported version: pip install 'curate[train]'")
    return kw


def callbacks_for(recipe: TrainRecipe, has_eval: bool) -> list:
    e = recipe.eval
    if has_eval and e is not None and e.early_stopping_patience:
        from transformers import EarlyStoppingCallback

        return [EarlyStoppingCallback(e.early_stopping_patience, e.early_stopping_threshold)]
    return []


class CurriculumMixin:
    """Trainer mixin: when the dataset was put in curriculum order, read it sequentially
    (the default is a RandomSampler); warmup from ``optim.warmup_ratio`` of the real step count."""

    curriculum: bool = False
    warmup_ratio: float = 0.0

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        # transformers reads warmup_steps < 1 as a ratio and >= 1 as steps, so a ratio of 1.0 would be one step
        import math

        self.args.warmup_steps = math.ceil(self.warmup_ratio * num_training_steps)
        return super().create_scheduler(num_training_steps, optimizer)

    def _get_train_sampler(self, train_dataset=None):
        if self.curriculum:
            ds = train_dataset if train_dataset is not None else self.train_dataset
            return SequentialSampler(ds)
        return super()._get_train_sampler(train_dataset)


def resume_arg(recipe: TrainRecipe):
    if recipe.resume is False:
        return None
    if recipe.resume is True:
        from transformers.trainer_utils import get_last_checkpoint

        out = Path(recipe.output_dir)
        last = get_last_checkpoint(str(out)) if out.is_dir() else None
        return last  # None: nothing to resume, start fresh
    p = Path(recipe.resume)
    if not p.exists():
        raise RecipeError(f"resume: no such checkpoint {p}")
    return str(p)

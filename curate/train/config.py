"""The train recipe (pydantic, extra="forbid"). No torch import here: ``curate schema`` imports it.

One YAML file describes one student run::

    method: sft            # sft | kd (offline top-k KD from stored logprobs) | online_kd (teacher beside)
    student: {model: Qwen/Qwen3-0.6B}
    dataset: {path: out/my-set/v1}          # version dir, parquet file, or hub id (+ split)
    lora: {r: 16, alpha: 32}               # `lora: null` = full fine-tuning
    output_dir: runs/qwen3-0.6b-sft
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StudentConfig(_Strict):
    model: str = Field(description="Local path or hub id of the student model.")
    tokenizer: str | None = Field(None, description="Tokenizer path or hub id (default: the model's).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; auto = bfloat16 on a bf16-capable GPU, float32 on CPU."
    )
    trust_remote_code: bool = False
    chat_template: str | None = Field(
        None, description="Path to a Jinja chat template that replaces the tokenizer's."
    )
    attn_implementation: str | None = Field(None, description="e.g. sdpa, flash_attention_2, eager.")


class DatasetConfig(_Strict):
    path: str = Field(description="A curate version dir (manifest.json + data/), a parquet/jsonl file, or a hub id.")
    split: str = "train"
    revision: str | None = None
    limit: int | None = Field(None, ge=1, description="Use only the first N rows (after curriculum ordering).")


class LoraConfig(_Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    quantize_4bit: bool = Field(
        False, description="QLoRA: load the base in 4-bit NF4 (needs CUDA and bitsandbytes)."
    )


class OptimConfig(_Strict):
    name: str = Field("adamw_torch", description="A transformers `optim` name (adamw_torch, adamw_8bit, ...).")
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    max_grad_norm: float = Field(1.0, gt=0)
    min_lr: float | None = Field(None, ge=0, description="Floor of the cosine_with_min_lr schedule (absolute).")
    min_lr_ratio: float | None = Field(
        None, ge=0, lt=1, description="Floor of the cosine_with_min_lr schedule as a fraction of lr."
    )

    @model_validator(mode="after")
    def _min_lr(self) -> OptimConfig:
        given = self.min_lr is not None or self.min_lr_ratio is not None
        if self.schedule == "cosine_with_min_lr":
            if not given:
                raise ValueError("schedule cosine_with_min_lr needs min_lr or min_lr_ratio")
            if self.min_lr is not None and self.min_lr_ratio is not None:
                raise ValueError("set one of min_lr, min_lr_ratio")
            if self.min_lr is not None and self.min_lr >= self.lr:
                raise ValueError(f"min_lr {self.min_lr} must be below lr {self.lr}")
        elif given:
            raise ValueError(f"min_lr/min_lr_ratio apply to schedule cosine_with_min_lr only (schedule is {self.schedule})")
        return self

    def scheduler_kwargs(self) -> dict:
        """transformers ``lr_scheduler_kwargs`` of the schedule."""
        if self.schedule != "cosine_with_min_lr":
            return {}
        return {"min_lr": self.min_lr} if self.min_lr is not None else {"min_lr_rate": self.min_lr_ratio}


class CurriculumConfig(_Strict):
    mode: Literal["auto", "off"] = Field(
        "auto", description="auto: follow `curriculum_rank` when the dataset has it; off: shuffle."
    )
    shuffle_within_stage: bool = Field(
        False, description="Shuffle rows inside each `curriculum_stage` (stages stay in order)."
    )

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, v):  # YAML 1.1 reads a bare `off` / `on` as a boolean
        return {False: "off", True: "auto"}.get(v, v) if isinstance(v, bool) else v


class EvalConfig(_Strict):
    """Evaluation during training: a held-out loss every ``steps`` optimizer steps, best-checkpoint
    selection and early stopping (transformers' Trainer machinery)."""

    split: str | None = Field(
        None, description="Evaluate on this split of dataset.path (e.g. validation). Exclusive with fraction."
    )
    fraction: float | None = Field(
        None, gt=0, lt=1, description="Hold out this fraction of the training rows (seeded) as the eval set."
    )
    limit: int | None = Field(None, ge=1, description="Use at most N eval rows.")
    steps: int = Field(100, ge=1, description="Evaluate every N optimizer steps (checkpoints are saved on the same steps).")
    metric: str = Field("eval_loss", description="Metric for the best checkpoint and early stopping.")
    greater_is_better: bool = Field(False, description="True for metrics where higher is better.")
    load_best: bool = Field(True, description="At the end, load (and save) the best checkpoint by `metric`.")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after N evaluations without improvement (null: never)."
    )
    early_stopping_threshold: float = Field(0.0, ge=0, description="Minimum improvement that counts.")

    @model_validator(mode="after")
    def _one_source(self) -> EvalConfig:
        if (self.split is None) == (self.fraction is None):
            raise ValueError("eval needs exactly one of split, fraction")
        return self


class KDConfig(_Strict):
    temperature: float = Field(1.0, gt=0, description="tau; the KD term is scaled by tau^2.")
    ce_weight: float = Field(
        0.5, ge=0, le=1, description="loss = ce_weight * CE + (1 - ce_weight) * tau^2 * KL(teacher || student)."
    )
    chunk_size: int = Field(1024, ge=1, description="Positions per chunk of the [T, V] logits.")
    check_tokenizer: bool = Field(True, description="Refuse rows whose tokenizer hash differs from the student's.")


class OnlineKDConfig(_Strict):
    teacher: str = Field(description="Teacher model path or hub id (same tokenizer family as the student).")
    divergence: Literal["forward_kl", "reverse_kl", "jsd"] = "forward_kl"
    beta: float = Field(0.5, ge=0, le=1, description="Generalised JSD interpolation (used when divergence=jsd).")
    temperature: float = Field(1.0, gt=0)
    lmbda: float = Field(
        0.0, ge=0, le=1, description="Fraction of steps trained on student-generated (on-policy) completions."
    )
    max_new_tokens: int = Field(256, ge=1)

    def trl_beta(self) -> float:
        return {"forward_kl": 0.0, "reverse_kl": 1.0}.get(self.divergence, self.beta)


class TrainRecipe(_Strict):
    """A student training run."""

    method: Literal["sft", "kd", "online_kd"] = "sft"
    student: StudentConfig
    dataset: DatasetConfig
    output_dir: str = Field(description="Where checkpoints, the adapter/model and train_summary.json go.")
    lora: LoraConfig | None = Field(default_factory=LoraConfig, description="null = full fine-tuning.")
    max_length: int = Field(16384, ge=8, description="Tokens per example (prompt + completion).")
    truncation: Literal["drop", "cut_end"] = Field(
        "drop",
        description="Examples longer than max_length: drop (default; a cut reasoning trace loses its answer and EOS) "
        "or cut_end (keep the first max_length tokens). Either way the run summary counts them.",
    )
    packing: bool = Field(False, description="Pack examples into max_length rows (SFT only). A dataset in curriculum order "
        "refuses it (packing mixes rows): set curriculum.mode: off to pack.")
    padding_free: bool = Field(False, description="Padding-free batches (needs flash attention).")
    optim: OptimConfig = Field(default_factory=OptimConfig)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="Stop after N optimizer steps (-1: run all epochs).")
    batch_size: int = Field(1, ge=1, description="Per-device batch size.")
    grad_accum: int = Field(8, ge=1)
    gradient_checkpointing: bool = False
    seed: int = 42
    resume: bool | str = Field(False, description="true: from the last checkpoint in output_dir; or a path.")
    save_steps: int = Field(500, ge=1, description="Checkpoint every N steps (with `eval`, eval.steps is used).")
    save_total_limit: int | None = Field(
        None, ge=1, description="Keep at most N checkpoints (the best one is kept too when eval.load_best)."
    )
    mixed_precision: Literal["auto", "bf16", "fp16", "no"] = Field(
        "auto",
        description="auto: bf16 on a bf16-capable GPU, fp16 on an older CUDA GPU, none on CPU. "
        "fp16/bf16 need a CUDA device.",
    )
    logging_steps: int = Field(10, ge=1)
    curriculum: CurriculumConfig = Field(default_factory=CurriculumConfig)
    kd: KDConfig = Field(default_factory=KDConfig)
    online: OnlineKDConfig | None = None
    merge: bool = Field(False, description="After LoRA training, also write the merged model to output_dir/merged.")
    report_to: list[str] = Field(
        default_factory=list,
        description="transformers report_to: tensorboard (in the train extra; logs under output_dir/runs), wandb "
        "(pip install wandb), ...",
    )
    run_name: str | None = Field(None, description="Run name for the trackers (default: output_dir's name).")
    eval: EvalConfig | None = Field(None, description="Evaluation during training (null: none).")

    @model_validator(mode="after")
    def _check(self) -> TrainRecipe:
        if self.method == "online_kd" and self.online is None:
            raise ValueError("method online_kd needs an `online:` section with a `teacher`")
        if self.merge and self.lora is None:
            raise ValueError("merge: true needs LoRA (full fine-tuning already saves a full model)")
        if self.packing and self.method != "sft":
            raise ValueError("packing is supported for method sft only")
        if self.eval is not None and self.eval.early_stopping_patience and not self.eval.load_best:
            raise ValueError("eval.early_stopping_patience needs eval.load_best: true (transformers' EarlyStoppingCallback)")
        return self

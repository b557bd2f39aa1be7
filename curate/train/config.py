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
    max_length: int = Field(16384, ge=8, description="Tokens per example; longer ones are truncated at the end.")
    packing: bool = Field(False, description="Pack examples into max_length rows (SFT only; not with curriculum).")
    padding_free: bool = Field(False, description="Padding-free batches (needs flash attention).")
    optim: OptimConfig = Field(default_factory=OptimConfig)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="Stop after N optimizer steps (-1: run all epochs).")
    batch_size: int = Field(1, ge=1, description="Per-device batch size.")
    grad_accum: int = Field(8, ge=1)
    gradient_checkpointing: bool = False
    seed: int = 42
    resume: bool | str = Field(False, description="true: from the last checkpoint in output_dir; or a path.")
    save_steps: int = Field(500, ge=1)
    logging_steps: int = Field(10, ge=1)
    curriculum: CurriculumConfig = Field(default_factory=CurriculumConfig)
    kd: KDConfig = Field(default_factory=KDConfig)
    online: OnlineKDConfig | None = None
    merge: bool = Field(False, description="After LoRA training, also write the merged model to output_dir/merged.")
    report_to: list[str] = Field(default_factory=list, description="transformers report_to (wandb, tensorboard, ...).")

    @model_validator(mode="after")
    def _check(self) -> TrainRecipe:
        if self.method == "online_kd" and self.online is None:
            raise ValueError("method online_kd needs an `online:` section with a `teacher`")
        if self.merge and self.lora is None:
            raise ValueError("merge: true needs LoRA (full fine-tuning already saves a full model)")
        if self.packing and self.method != "sft":
            raise ValueError("packing is supported for method sft only")
        return self

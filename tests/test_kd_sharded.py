"""The offline KD loss under full parameter sharding, on CPU: FSDP2 (``fully_shard``, gloo, one process) turns the
student's parameters into DTensor shards; the KD loss computed through the model's forward sees gathered weights
and gives the unsharded loss and gradients exactly, where reading ``lm_head.weight`` outside the forward (the
previous implementation) meets a shard. DeepSpeed ZeRO-3 gathers through the same forward hooks."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
dist = pytest.importorskip("torch.distributed")

SCRIPT = r'''
import os, sys, torch
import torch.distributed as dist
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[1] if len(sys.argv) > 1 else "29541")
torch.manual_seed(0); torch.set_num_threads(1)
from support.tiny import make_tokenizer, make_model
from curate.train.kd import kd_loss_through_model
tok = make_tokenizer()
B, T, K = 2, 12, 4
g = torch.Generator().manual_seed(1)
ids = torch.randint(10, 90, (B, T), generator=g)
labels = ids.clone(); labels[:, :4] = -100
tk = torch.randint(10, 90, (B, T, K), generator=g)
tl = torch.log_softmax(torch.randn(B, T, K, generator=g), -1) - 0.5
inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels, "kd_topk_ids": tk, "kd_topk_logprobs": tl}
def run(model):
    loss, kl, ce = kd_loss_through_model(model, inputs, temperature=1.0, ce_weight=0.5, chunk_size=5, num_items=int(labels[:, 1:].ne(-100).sum()))
    loss.backward()
    grads = {n: (p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad).clone() for n, p in model.named_parameters()}
    return loss.detach(), grads
ref_loss, ref_grads = run(make_model(tok, seed=3))
dist.init_process_group("gloo", rank=0, world_size=1)
from torch.distributed.fsdp import fully_shard
m = make_model(tok, seed=3)
for layer in m.model.layers: fully_shard(layer)
fully_shard(m)
assert type(m.lm_head.weight).__name__ == "DTensor"
try:  # reading the lm_head weight outside the forward, as the KD loss did: a shard, not the weight
    torch.nn.functional.linear(torch.randn(3, m.config.hidden_size), m.lm_head.weight)
    old_ok = True
except Exception:
    old_ok = False
loss, grads = run(m)
dist.destroy_process_group()
err = max((grads[n] - ref_grads[n]).abs().max().item() for n in ref_grads)
print(f"old_path_ok={old_ok} loss_diff={abs(loss.item() - ref_loss.item()):.3e} max_grad_diff={err:.3e} n={len(grads)}")
assert not old_ok and abs(loss.item() - ref_loss.item()) < 1e-5 and err < 1e-5 and set(grads) == set(ref_grads)
print("OK")
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_kd_loss_through_the_forward_under_fsdp_full_sharding(tmp_path):
    script = tmp_path / "fsdp_kd.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(script), str(_free_port())], capture_output=True, text=True, timeout=300,
                         env=env)  # the script imports the test support (tests/support)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]
    assert "old_path_ok=False" in out.stdout

#!/usr/bin/env python3
"""Read a `forge export-bake --format jsonl` file in PyTorch: the top-K + tail distillation loss.

This is the reference consumer of the export schema (docs/scale-out.md, "forge.bake-export/1").
It needs only torch: the student here is the export's base model, a GPT-2 checkpoint in the
Hugging Face layout (config.json + model.safetensors, F32), with its decoder written below so the
script runs where `transformers` is not installed. A TRL/PEFT job would load the same model with
`AutoModelForCausalLM.from_pretrained(header["model"])` and use `topk_tail_kl` unchanged.

  python3 forge_distill.py export.jsonl            # mean KL(teacher || student) per token, JSON
  python3 forge_distill.py export.jsonl --steps 3  # also a few LoRA-free SGD steps (the loss falls)

Prints one JSON line: {"kl": ..., "tokens": ..., "trajectories": ..., "k": ...}.
"""
import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F


def read_export(path):
    """The header and the trajectory records of an export file."""
    with open(path, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    header, records = lines[0], lines[1:]
    if header.get("type") != "header" or header.get("schema") != "forge.bake-export/1":
        sys.exit(f"{path}: line 1 is not a forge.bake-export/1 header")
    return header, records


def topk_tail_kl(student_logits, teacher_ids, teacher_logprobs, teacher_tail):
    """KL(teacher || student) over the teacher's top-K tokens plus one tail bucket, per position.

    student_logits [N, V]; teacher_ids [N, K] (long); teacher_logprobs [N, K]; teacher_tail [N].
    The student's tail is the log of its probability mass outside the teacher's top K.
    """
    log_q = F.log_softmax(student_logits.float(), dim=-1)
    log_qk = log_q.gather(-1, teacher_ids)
    pk = teacher_logprobs.exp()
    head = torch.where(pk > 0, pk * (teacher_logprobs - log_qk), torch.zeros_like(pk)).sum(-1)
    in_topk = torch.zeros_like(log_q, dtype=torch.bool).scatter_(-1, teacher_ids, True)
    tail_log_q = torch.logsumexp(log_q.masked_fill(in_topk, float("-inf")), dim=-1)
    tail_p = teacher_tail
    tail = torch.where(
        tail_p > 0, tail_p * (torch.log(tail_p.clamp_min(1e-30)) - tail_log_q), torch.zeros_like(tail_p)
    )
    return head + tail


def batch_of(record):
    """Student input ids (input + trajectory, the last token only a target) and the targets."""
    prompt, response = record["input"]["ids"], record["trajectory"]["ids"]
    ids = torch.tensor(prompt + response[:-1], dtype=torch.long)
    first = len(prompt) - 1  # position predicting response[0]
    positions = torch.arange(first, first + len(response))
    teacher = record["teacher"]
    return (
        ids,
        positions,
        torch.tensor(teacher["ids"], dtype=torch.long),
        torch.tensor(teacher["logprobs"], dtype=torch.float32),
        torch.tensor(teacher["tail"], dtype=torch.float32),
    )


# --- a GPT-2 decoder from config.json + model.safetensors (what transformers would load) ---


def load_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            sys.exit(f"{path}: tensor {name} is {info['dtype']}; this example reads F32")
        begin, end = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=torch.float32).reshape(info["shape"])
    return out


class GPT2:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.config = json.load(f)
        if self.config.get("model_type") != "gpt2":
            sys.exit(f"{model_dir}: this example's decoder is GPT-2; load other models with transformers")
        self.w = load_safetensors(os.path.join(model_dir, "model.safetensors"))
        for w in self.w.values():
            w.requires_grad_(False)

    def parameters(self):
        return list(self.w.values())

    def __call__(self, ids):
        c, w = self.config, self.w
        heads, eps = c["n_head"], c.get("layer_norm_epsilon", 1e-5)
        t = ids.shape[-1]
        x = w["wte.weight"][ids] + w["wpe.weight"][:t]
        mask = torch.ones(t, t, dtype=torch.bool).tril()
        ln = lambda x, p: F.layer_norm(x, x.shape[-1:], w[f"{p}.weight"], w.get(f"{p}.bias"), eps)
        lin = lambda x, p: x @ w[f"{p}.weight"] + w[f"{p}.bias"] if f"{p}.bias" in w else x @ w[f"{p}.weight"]
        for i in range(c["n_layer"]):
            h = ln(x, f"h.{i}.ln_1")
            q, k, v = lin(h, f"h.{i}.attn.c_attn").split(x.shape[-1], dim=-1)
            split = lambda z: z.view(t, heads, -1).transpose(0, 1)
            q, k, v = split(q), split(k), split(v)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
            att = att.masked_fill(~mask, float("-inf")).softmax(-1)
            y = (att @ v).transpose(0, 1).reshape(t, -1)
            x = x + lin(y, f"h.{i}.attn.c_proj")
            h = ln(x, f"h.{i}.ln_2")
            x = x + lin(F.gelu(lin(h, f"h.{i}.mlp.c_fc"), approximate="tanh"), f"h.{i}.mlp.c_proj")
        x = ln(x, "ln_f")
        return x @ w.get("lm_head.weight", w["wte.weight"]).T


def mean_kl(model, records):
    total, tokens = 0.0, 0
    with torch.no_grad():
        for record in records:
            ids, positions, t_ids, t_lp, t_tail = batch_of(record)
            logits = model(ids)[positions]
            kl = topk_tail_kl(logits, t_ids, t_lp, t_tail)
            total += kl.sum().item()
            tokens += kl.numel()
    return total / max(1, tokens), tokens


def main():
    p = argparse.ArgumentParser()
    p.add_argument("export")
    p.add_argument("--model", help="the student's directory (default: the header's model)")
    p.add_argument("--steps", type=int, default=0, help="SGD steps on the final LayerNorm (a demo)")
    args = p.parse_args()
    torch.manual_seed(0)
    header, records = read_export(args.export)
    model = GPT2(args.model or header["model"])
    kl, tokens = mean_kl(model, records)
    result = {"kl": kl, "tokens": tokens, "trajectories": len(records), "k": header["k"]}
    if args.steps > 0:
        # the distillation step a TRL/PEFT job takes, on a few parameters to stay tiny
        trained = [model.w["ln_f.weight"], model.w["ln_f.bias"]]
        for w in trained:
            w.requires_grad_(True)
        opt = torch.optim.Adam(trained, lr=1e-2)
        for _ in range(args.steps):
            opt.zero_grad()
            losses = []
            for record in records:
                ids, positions, t_ids, t_lp, t_tail = batch_of(record)
                losses.append(topk_tail_kl(model(ids)[positions], t_ids, t_lp, t_tail))
            loss = torch.cat(losses).mean()
            loss.backward()
            opt.step()
        result["klAfter"] = mean_kl(model, records)[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch CPU peer for @forge/model's Llama-scale bench (bench/llama-scale.bench.ts).

Writes a random-weight checkpoint with SmolLM2-135M's exact shapes (bf16 safetensors, the
Hugging Face layout) when --out does not hold one, then measures, at 1 and at 2 threads (the
best of each figure is reported): load time (safetensors -> float32 tensors), a forward pass of
--tokens tokens, KV-cache generation at batch 1, and one LoRA training step (r 8 on q/v, batch
--batch x --tokens, AdamW). The decoder is written here from the architecture, as in
src/testing/llama/generate.py. Prints one JSON line.

Set-up (Debian): apt-get install -y python3-torch libopenblas0-pthread
"""
import argparse, json, math, os, resource, struct, sys, time

if {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"} & set(os.environ):  # they slow this OpenBLAS ~5x
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        os.environ.pop(k, None)
    os.execv(sys.executable, [sys.executable] + sys.argv)

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--out", required=True)
p.add_argument("--tokens", type=int, default=128)
p.add_argument("--prompt", type=int, default=16)
p.add_argument("--gen", type=int, default=32)
p.add_argument("--batch", type=int, default=4)
args = p.parse_args()

CONFIG = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 49152, "hidden_size": 576,
    "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
    "head_dim": 64, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
    "rope_scaling": None, "hidden_act": "silu", "tie_word_embeddings": True, "attention_bias": False,
    "mlp_bias": False, "torch_dtype": "bfloat16",
}
C, I, L, H, KV, hd, V = 576, 1536, 30, 9, 3, 64, 49152


def write_checkpoint(out):
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(135)
    names = {"model.embed_tokens.weight": (V, C), "model.norm.weight": (C,)}
    for i in range(L):
        pre = f"model.layers.{i}"
        names.update({
            f"{pre}.input_layernorm.weight": (C,), f"{pre}.post_attention_layernorm.weight": (C,),
            f"{pre}.self_attn.q_proj.weight": (H * hd, C), f"{pre}.self_attn.k_proj.weight": (KV * hd, C),
            f"{pre}.self_attn.v_proj.weight": (KV * hd, C), f"{pre}.self_attn.o_proj.weight": (C, H * hd),
            f"{pre}.mlp.gate_proj.weight": (I, C), f"{pre}.mlp.up_proj.weight": (I, C), f"{pre}.mlp.down_proj.weight": (C, I),
        })
    header, offset = {}, 0
    for n, shape in names.items():
        size = math.prod(shape) * 2
        header[n] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for n, shape in names.items():
            t = torch.ones(shape) if n.endswith("norm.weight") else torch.randn(shape, generator=g) * 0.02
            f.write(t.to(torch.bfloat16).view(torch.int16).numpy().tobytes())
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)


def load(out):
    with open(os.path.join(out, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        w = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            f.seek(base + a)
            raw = torch.frombuffer(bytearray(f.read(b - a)), dtype=torch.int16).view(torch.bfloat16)
            w[name] = raw.to(torch.float32).reshape(info["shape"])
    return w


def rope(T0, T):
    inv = 1.0 / (CONFIG["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.arange(T0, T0 + T, dtype=torch.float32)[:, None] * inv[None, :]
    emb = torch.cat([ang, ang], -1)
    return emb.cos(), emb.sin()


def rotate(x, cos, sin):
    a, b = x[..., : hd // 2], x[..., hd // 2 :]
    return x * cos + torch.cat([-b, a], -1) * sin


def rms(x, g):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * g


def forward(w, ids, cache=None, lora=None):
    B, T = ids.shape
    past = 0 if cache is None or cache[0] is None else cache[0][0].shape[2]
    cos, sin = rope(past, T)
    x = w["model.embed_tokens.weight"][ids]
    for i in range(L):
        pre = f"model.layers.{i}"
        h = rms(x, w[pre + ".input_layernorm.weight"])
        q = h @ w[pre + ".self_attn.q_proj.weight"].T
        v = h @ w[pre + ".self_attn.v_proj.weight"].T
        if lora is not None:
            q = q + (h @ lora[(i, "q")][0]) @ lora[(i, "q")][1] * 2.0
            v = v + (h @ lora[(i, "v")][0]) @ lora[(i, "v")][1] * 2.0
        k = h @ w[pre + ".self_attn.k_proj.weight"].T
        q = rotate(q.view(B, T, H, hd).transpose(1, 2), cos, sin)
        k = rotate(k.view(B, T, KV, hd).transpose(1, 2), cos, sin)
        v = v.view(B, T, KV, hd).transpose(1, 2)
        if cache is not None:
            if cache[i] is not None:
                k = torch.cat([cache[i][0], k], 2)
                v = torch.cat([cache[i][1], v], 2)
            cache[i] = (k, v)
        k = k.repeat_interleave(H // KV, 1)
        v = v.repeat_interleave(H // KV, 1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
        if T > 1:  # query t sees keys up to past + t
            tk = k.shape[2]
            scores = scores + torch.full((T, tk), float("-inf")).triu(tk - T + 1)
        y = torch.softmax(scores, -1) @ v
        x = x + y.transpose(1, 2).reshape(B, T, H * hd) @ w[pre + ".self_attn.o_proj.weight"].T
        h = rms(x, w[pre + ".post_attention_layernorm.weight"])
        x = x + (F.silu(h @ w[pre + ".mlp.gate_proj.weight"].T) * (h @ w[pre + ".mlp.up_proj.weight"].T)) @ w[pre + ".mlp.down_proj.weight"].T
    return rms(x, w["model.norm.weight"]) @ w["model.embed_tokens.weight"].T


def measure(threads, w):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (1, args.tokens), generator=g)
    with torch.no_grad():
        forward(w, ids[:, :8])
        t = time.perf_counter()
        forward(w, ids)
        fwd = args.tokens / (time.perf_counter() - t)
        cache = [None] * L
        logits = forward(w, ids[:, : args.prompt], cache)
        t = time.perf_counter()
        for _ in range(args.gen):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            logits = forward(w, nxt, cache)
        gen = args.gen / (time.perf_counter() - t)
    lora = {}
    for i in range(L):
        for which, out in (("q", H * hd), ("v", KV * hd)):
            a = (torch.rand(C, 8, generator=g) * 2 - 1) / math.sqrt(C)
            lora[(i, which)] = (a.requires_grad_(), torch.zeros(8, out, requires_grad=True))
    params = [p for pair in lora.values() for p in pair]
    opt = torch.optim.AdamW(params, lr=1e-3)
    batch = torch.randint(0, V, (args.batch, args.tokens + 1), generator=g)

    def step():
        opt.zero_grad()
        logits = forward(w, batch[:, :-1], lora=lora)
        loss = F.cross_entropy(logits.reshape(-1, V), batch[:, 1:].reshape(-1))
        loss.backward()
        opt.step()

    step()
    t = time.perf_counter()
    step()
    return {"forward_tokens_per_second": fwd, "generate_tokens_per_second": gen, "lora_step_seconds": time.perf_counter() - t}


if not os.path.exists(os.path.join(args.out, "model.safetensors")):
    write_checkpoint(args.out)
t = time.perf_counter()
w = load(args.out)
load_seconds = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
runs = {n: measure(n, w) for n in (1, 2)}
best = {
    "forward_tokens_per_second": max(r["forward_tokens_per_second"] for r in runs.values()),
    "generate_tokens_per_second": max(r["generate_tokens_per_second"] for r in runs.values()),
    "lora_step_seconds": min(r["lora_step_seconds"] for r in runs.values()),
}
print(json.dumps({"torch": torch.__version__, "parameters": sum(t.numel() for t in w.values()), "load_seconds": load_seconds,
                  "peak_rss_after_load_bytes": rss, "by_threads": runs, "best": best}))

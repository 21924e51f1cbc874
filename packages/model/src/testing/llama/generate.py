#!/usr/bin/env python3
"""Tiny random Llama-family checkpoints and their reference logits, for @forge/model's tests.

The reference forward below is written from the architecture (Llama: RMSNorm, rotary position
embeddings with "rotate half" pairing and optional Llama 3 frequency scaling, grouped-query
attention, SwiGLU MLP; Qwen2: the same with q/k/v biases), in float64 on the weights exactly as
stored (after rounding to bf16/fp16), independently of forge and of transformers.

Run (Debian: apt-get install -y python3-torch):  /usr/bin/python3 generate.py
Writes tiny-llama/ (bf16, two shards + index, GQA, llama3 rope scaling, untied head),
tiny-qwen2/ (fp16, one file, q/k/v biases, tied head) and reference.json.
"""
import json, math, os, struct
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(20261129)

DTYPES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        raw = t.contiguous().view(torch.int16 if t.dtype != torch.float32 else torch.int32).numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def inverse_frequencies(cfg):
    hd = cfg["head_dim"]
    freqs = [1.0 / cfg["rope_theta"] ** (2 * i / hd) for i in range(hd // 2)]
    s = cfg.get("rope_scaling")
    if not s:
        return torch.tensor(freqs, dtype=torch.float64)
    out = []
    low_wave = s["original_max_position_embeddings"] / s["low_freq_factor"]
    high_wave = s["original_max_position_embeddings"] / s["high_freq_factor"]
    for f in freqs:
        wave = 2 * math.pi / f
        if wave < high_wave:
            out.append(f)
        elif wave > low_wave:
            out.append(f / s["factor"])
        else:
            smooth = (s["original_max_position_embeddings"] / wave - s["low_freq_factor"]) / (s["high_freq_factor"] - s["low_freq_factor"])
            out.append((1 - smooth) * f / s["factor"] + smooth * f)
    return torch.tensor(out, dtype=torch.float64)


def reference_logits(cfg, w, ids):
    """w: name → float64 tensor in torch layout ([out, in] for projections)."""
    B, T = ids.shape
    C, H, KV, hd = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]

    def rms(x, g):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * g

    def proj(x, name):
        y = x @ w[name + ".weight"].T
        return y + w[name + ".bias"] if name + ".bias" in w else y

    angles = torch.arange(T, dtype=torch.float64)[:, None] * inverse_frequencies(cfg)[None, :]  # [T, hd/2]
    cos, sin = torch.cos(angles), torch.sin(angles)

    def rotate(x):  # x [B, heads, T, hd]: pair i with i + hd/2
        a, b = x[..., : hd // 2], x[..., hd // 2 :]
        return torch.cat([a * cos - b * sin, b * cos + a * sin], -1)

    x = w["model.embed_tokens.weight"][ids]  # [B, T, C]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}"
        h = rms(x, w[p + ".input_layernorm.weight"])
        q = proj(h, p + ".self_attn.q_proj").view(B, T, H, hd).transpose(1, 2)
        k = proj(h, p + ".self_attn.k_proj").view(B, T, KV, hd).transpose(1, 2)
        v = proj(h, p + ".self_attn.v_proj").view(B, T, KV, hd).transpose(1, 2)
        q, k = rotate(q), rotate(k)
        group = H // KV
        out = torch.zeros(B, H, T, hd, dtype=torch.float64)
        for head in range(H):  # query head `head` reads key/value head head // group
            s = q[:, head] @ k[:, head // group].transpose(-1, -2) / math.sqrt(hd) + mask
            out[:, head] = torch.softmax(s, -1) @ v[:, head // group]
        x = x + proj(out.transpose(1, 2).reshape(B, T, H * hd), p + ".self_attn.o_proj")
        h = rms(x, w[p + ".post_attention_layernorm.weight"])
        gate, up = proj(h, p + ".mlp.gate_proj"), proj(h, p + ".mlp.up_proj")
        x = x + proj(gate * torch.sigmoid(gate) * up, p + ".mlp.down_proj")
    x = rms(x, w["model.norm.weight"])
    head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
    return x @ head.T


def random_weights(cfg, qkv_bias):
    C, H, KV, hd, I, V = (cfg[k] for k in ("hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size"))
    w = {"model.embed_tokens.weight": torch.randn(V, C)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}"
        w[p + ".input_layernorm.weight"] = 1 + 0.1 * torch.randn(C)
        w[p + ".post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(C)
        for name, out, inp in (("q_proj", H * hd, C), ("k_proj", KV * hd, C), ("v_proj", KV * hd, C), ("o_proj", C, H * hd)):
            w[f"{p}.self_attn.{name}.weight"] = 0.15 * torch.randn(out, inp)
            if qkv_bias and name != "o_proj":
                w[f"{p}.self_attn.{name}.bias"] = 0.1 * torch.randn(out)
        for name, out, inp in (("gate_proj", I, C), ("up_proj", I, C), ("down_proj", C, I)):
            w[f"{p}.mlp.{name}.weight"] = 0.15 * torch.randn(out, inp)
    w["model.norm.weight"] = 1 + 0.1 * torch.randn(C)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = 0.15 * torch.randn(V, C)
    return w


def make(name, cfg, dtype, qkv_bias, shards):
    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    stored = {k: v.to(dtype) for k, v in random_weights(cfg, qkv_bias).items()}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    names = list(stored)
    if shards == 1:
        write_safetensors(os.path.join(out, "model.safetensors"), stored)
    else:
        weight_map = {}
        per = math.ceil(len(names) / shards)
        for s in range(shards):
            file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: stored[n] for n in names[s * per : (s + 1) * per]}
            write_safetensors(os.path.join(out, file), part)
            weight_map.update({n: file for n in part})
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": sum(t.numel() * 2 for t in stored.values())}, "weight_map": weight_map}, f, indent=2)
    ids = torch.randint(0, cfg["vocab_size"], (2, 12))
    logits = reference_logits(cfg, {k: v.to(torch.float64) for k, v in stored.items()}, ids)
    return {"ids": ids.tolist(), "logits": [[[round(float(v), 7) for v in row] for row in seq] for seq in logits]}


llama = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 96, "hidden_size": 64,
    "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "head_dim": 16, "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 512},
    "hidden_act": "silu", "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
    "torch_dtype": "bfloat16",
}
qwen2 = {
    "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": 80, "hidden_size": 48,
    "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 2,
    "head_dim": 8, "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "hidden_act": "silu", "tie_word_embeddings": True, "use_sliding_window": False, "torch_dtype": "float16",
}
reference = {
    "tiny-llama": make("tiny-llama", llama, torch.bfloat16, False, 2),
    "tiny-qwen2": make("tiny-qwen2", qwen2, torch.float16, True, 1),
}
with open(os.path.join(HERE, "reference.json"), "w") as f:
    json.dump(reference, f)
print("wrote", ", ".join(reference))

"""
Fixtures for packages/tokenizer/src/hf-families.test.ts: small tokenizer.json files with the
exact structure of Llama-3's and Qwen2's (and of the tokenizer types forge refuses), and the
ids Hugging Face's own `tokenizers` library gives for a set of texts — the reference the test
holds forge's loader to.

The structures are written out by hand from the published tokenizer.json files (Llama-3.x:
Sequence[Split(regex), ByteLevel(use_regex=false)] pre-tokenizer, no normaliser, ByteLevel
decoder, a TemplateProcessing post-processor adding <|begin_of_text|>, ignore_merges; Qwen2:
NFC normaliser, its own Split regex, ByteLevel); only the vocabulary is small — learned here by
the library's BPE trainer on a small corpus — so the files stay a few kB.

Run (needs `pip install tokenizers`; not needed to run the tests):
    python3 packages/tokenizer/src/testing/hf/generate.py
"""
import json
import os

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, decoders, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))

LLAMA3_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's 2024; we'll see 12345 foxes!",
    "Hello, world! HELLO WORLD. I'M HERE, YOU'RE THERE, THEY'VE GONE, HE'D GO.",
    "def add(a, b):\n    return a + b\n\n\nprint(add(1, 22))  # 23\n",
    "Café crème brûlée — naïve façade. Ünïcödé ñ. 東京は日本の首都です。 Привет мир.",
    "Numbers: 1, 12, 123, 1234, 12345678. Emoji: 🙂🚀 and tabs\tand  double  spaces.",
] * 20

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "It's I'll WE'LL You'RE they've HE'D don't",
    "12345678 and 1234 and 7",
    "def add(a, b):\n    return a + b\n\n\n",
    "   leading and trailing spaces   ",
    "tabs\tand\nnew\r\nlines",
    "Café crème brûlée — naïve façade",
    "Cafe\u0301 decomposed e\u0301 and A\u030a",
    "東京は日本の首都です。",
    "Привет мир!",
    "🙂🚀 emoji 👩‍👩‍👧",
    "unseen zxqv words xyzzy",
    "",
    " ",
    "a",
]


def byte_level_bpe(pattern, normalizer, specials, post, ignore_merges):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(pattern=__import__("tokenizers").Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    # the hub's files put special tokens after the vocabulary: move them there
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    for token in specials:
        del vocab[token]
    ordered = sorted(vocab.items(), key=lambda kv: kv[1])
    data["model"]["vocab"] = {token: i for i, (token, _) in enumerate(ordered)}
    first = len(ordered)
    data["added_tokens"] = [
        {"id": first + i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, t in enumerate(specials)
    ]
    data["post_processor"] = post(first)
    return Tokenizer.from_str(json.dumps(data))


def llama3():
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    post = lambda first: {
        "type": "Sequence",
        "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [first], "tokens": ["<|begin_of_text|>"]}}},
        ],
    }
    return byte_level_bpe(LLAMA3_PATTERN, None, specials, post, ignore_merges=True), {
        "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
    }


def qwen2():
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    post = lambda first: {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return byte_level_bpe(QWEN2_PATTERN, normalizers.NFC(), specials, post, ignore_merges=False), {
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
    }


def reference(tok, name, config):
    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    data = json.loads(tok.to_str())
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=1)
    specials = [t["content"] for t in data["added_tokens"]]
    texts = TEXTS + [f"{specials[1]}user\nhi{specials[-1]}", f"a{specials[0]}b"]
    cases = []
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        cases.append({
            "text": text,
            "ids": ids,
            "withSpecial": tok.encode(text, add_special_tokens=True).ids,
            "decoded": tok.decode(ids, skip_special_tokens=False),
        })
    with open(os.path.join(out, "reference.json"), "w", encoding="utf-8") as f:
        json.dump({"tokenizers": __import__("tokenizers").__version__, "cases": cases}, f, ensure_ascii=False, indent=1)


def refused():
    """tokenizer.json files of the types forge does not support, as the library writes them."""
    out = os.path.join(HERE, "unsupported")
    os.makedirs(out, exist_ok=True)
    small = ["hello world", "hello there"]
    kinds = {}
    t = Tokenizer(models.Unigram([("<unk>", 0.0), ("▁hello", -1.0), ("▁world", -2.0), ("▁", -3.0)], 0, byte_fallback=False))
    t.pre_tokenizer = pre_tokenizers.Metaspace()
    kinds["unigram"] = t
    t = Tokenizer(models.WordPiece({"[UNK]": 0, "hello": 1, "world": 2, "##s": 3}, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    kinds["wordpiece"] = t
    t = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    kinds["wordlevel"] = t
    # SentencePiece-style BPE (Llama 2, TinyLlama, Mistral): Metaspace, byte fallback
    t = Tokenizer(models.BPE({"<unk>": 0, "<0x00>": 1, "▁": 2, "h": 3, "e": 4, "▁h": 5}, [("▁", "h")], byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    t.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    kinds["sentencepiece-bpe"] = t
    for name, tok in kinds.items():
        with open(os.path.join(out, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(json.loads(tok.to_str()), f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    tok, config = llama3()
    reference(tok, "llama3", config)
    tok, config = qwen2()
    reference(tok, "qwen2", config)
    refused()

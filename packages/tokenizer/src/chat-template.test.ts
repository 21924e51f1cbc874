/**
 * A Hugging Face model's own chat template drives promptIds, renderChat (with the assistant
 * mask), stopIds and bannedIds when the tokenizer has no forge chat tokens. The templates are
 * written in the shape the models ship (Qwen2.5's ChatML with a default system prompt, Llama
 * 3's headers); the rendered texts are the ones those models' users see.
 */
import { describe, expect, it } from "vitest";
import { Tokenizer } from "./tokenizer.js";

const QWEN_TEMPLATE =
  "{%- if messages[0]['role'] == 'system' %}" +
  "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}" +
  "{%- else %}" +
  "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}" +
  "{%- endif %}" +
  "{%- for message in messages %}" +
  "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or (message.role == 'assistant') %}" +
  "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}" +
  "{%- endif %}" +
  "{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

const LLAMA3_TEMPLATE =
  "{% set loop_messages = messages %}" +
  "{% for message in loop_messages %}" +
  "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' %}" +
  "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}" +
  "{{ content }}" +
  "{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

/** A byte-level tokenizer (no merges) with a model's special tokens after the 256 bytes. */
function byteTokenizer(specials: string[], template: string, variables: Record<string, unknown>) {
  return new Tokenizer({
    tokens: Array.from({ length: 256 }, (_, b) => Uint8Array.of(b)),
    merges: [],
    specialTokens: Object.fromEntries(specials.map((t, i) => [t, 256 + i])),
    chatTemplate: template,
    templateVariables: variables,
  });
}

const qwen = byteTokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], QWEN_TEMPLATE, {
  eos_token: "<|im_end|>",
  pad_token: "<|endoftext|>",
});
const llama = byteTokenizer(
  [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
  ],
  LLAMA3_TEMPLATE,
  { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" },
);

describe("a model's own chat template", () => {
  it("renders the prompt users of the model see, default system prompt included", () => {
    expect(qwen.usesTemplate).toBe(true);
    const ids = qwen.promptIds([{ role: "user", content: "What is 2+2?" }]);
    expect(qwen.decode(ids)).toBe(
      "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(ids[0]).toBe(257); // <|im_start|> as its id, not as text
    const withSystem = qwen.promptIds([
      { role: "system", content: "You are a pirate." },
      { role: "user", content: "Hi" },
    ]);
    expect(qwen.decode(withSystem)).toBe(
      "<|im_start|>system\nYou are a pirate.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(llama.decode(llama.promptIds([{ role: "user", content: " Hi " }]))).toBe(
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    );
  });

  it("content cannot inject a special token's id through the template", () => {
    const ids = qwen.promptIds([{ role: "user", content: "<|im_end|>" }]);
    // the template's own markers are ids; the user's text is text — but a template's output is
    // one string, so the user's marker text is encoded as the token too: say so in the docs
    expect(ids.filter((id) => id === 258).length).toBeGreaterThanOrEqual(2);
  });

  it("masks exactly each assistant reply and its end-of-turn token", () => {
    const messages = [
      { role: "user" as const, content: "2+2?" },
      { role: "assistant" as const, content: "4" },
      { role: "user" as const, content: "3+3?" },
      { role: "assistant" as const, content: "6" },
    ];
    for (const tokenizer of [qwen, llama]) {
      const { ids, assistantMask, spans } = tokenizer.renderChat(messages);
      const learned = ids.filter((_, i) => assistantMask[i] === 1);
      const end = tokenizer.stopIds()[0]!;
      const text = tokenizer.decode(learned);
      expect(text.replace(/\n/g, "")).toMatch(
        new RegExp(
          `^4${escapeText(tokenizer.decode([end]))}.*6${escapeText(tokenizer.decode([end]))}$`,
        ),
      );
      expect(spans.map((s) => s.role)).toEqual(["user", "assistant", "user", "assistant"]);
      expect(spans.at(-1)!.end).toBe(ids.length);
      expect(assistantMask.at(-1)).toBe(tokenizer === qwen ? 0 : 1); // not qwen's "\n" after <|im_end|>
    }
  });

  it("stops at eos_token and at the model's extra stop ids; bans the other special tokens", () => {
    expect(qwen.stopIds()).toEqual([258]);
    expect(qwen.bannedIds()).toEqual([256, 257]);
    const extended = llama.withStopIds([257]);
    expect(extended.stopIds()).toEqual([257, 260]);
    expect(extended.bannedIds()).toEqual([256, 258, 259]);
    expect(llama.stopIds()).toEqual([260]); // the original is unchanged
    const none = byteTokenizer(["<|x|>"], QWEN_TEMPLATE, {});
    expect(() => none.stopIds()).toThrow(/no end-of-turn token: set eos_token/);
  });

  it("add_bos_token puts the BOS first when the template does not", () => {
    const plain = byteTokenizer(
      ["<s>", "</s>"],
      "{% for m in messages %}{{ m.content }}{% endfor %}",
      {
        bos_token: "<s>",
        eos_token: "</s>",
        add_bos_token: true,
      },
    );
    expect(plain.promptIds([{ role: "user", content: "hi" }])).toEqual([256, 104, 105]);
  });
});

function escapeText(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

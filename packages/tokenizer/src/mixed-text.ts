/**
 * Deterministic mixed text for tests and benchmarks: prose with contractions, source code,
 * numbers, whitespace of every kind, and samples of many Unicode categories (Latin with
 * accents, Greek, Cyrillic, Arabic, Devanagari, CJK, Hangul, emoji with modifiers and ZWJ,
 * combining marks, non-ASCII digits, unusual spaces). Not part of the public API.
 */

import { mulberry32 } from "@forge/core";

const WORDS = (
  "the of and to in is you that it he was for on are as with his they at be this have from or one had by " +
  "word but not what all were we when your can said there use an each which she do how their if will up " +
  "other about out many then them these so some her would make like him into time has look two more write " +
  "go see number no way could people my than first water been call who oil its now find long down day did"
).split(" ");

const SAMPLES = [
  "naïve café résumé façade Ångström über straße",
  "Ελληνικά κείμενο με τόνους",
  "Русский текст, ёлка и щука",
  "النص العربي مع التشكيل",
  "हिन्दी पाठ देवनागरी में",
  "日本語のテキストと漢字、ひらがな、カタカナ",
  "中文文本，标点符号。",
  "한국어 텍스트 입니다",
  "emoji 😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️",
  "combining: e\u0301 a\u0308 n\u0303 \u0041\u030A",
  "digits: ١٢٣ ४५६ ７８９ Ⅻ ½ ²",
  "spaces:\u00a0nbsp\u2003em\u2009thin\u3000ideographic\u200bzw",
  "tabs\tand\ttabs\n\nnew\r\nlines   multiple    spaces",
  "contractions: don't it's we're they've I'm you'll he'd 'quoted' ''twice''",
  "math: ∑ ∫ √ ≤ ≥ ≠ ∞ π → ⇒",
  "symbols: @#$%^&*()_+-=[]{}|;:'\",.<>/?`~",
  "long​word​with​zero​width​joiners and aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

const CODE = [
  "function add(a: number, b: number): number {\n  return a + b;\n}\n",
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a JavaScript template literal as sample text
  "for (let i = 0; i < 10; i++) {\n\tconsole.log(`value ${i}`);\n}\n",
  "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
  '{"key": "value", "list": [1, 2.5, -3e10], "nested": {"ok": true}}\n',
  "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;\n",
  '#include <stdio.h>\nint main(void) { printf("%d\\n", 42); return 0; }\n',
];

/** About `bytes` bytes (UTF-8) of mixed text, the same for the same seed. */
export function mixedText(bytes: number, seed = 1): string {
  const random = mulberry32(seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const parts: string[] = [];
  let size = 0;
  while (size < bytes) {
    const r = random();
    let part: string;
    if (r < 0.55) {
      const n = 5 + Math.floor(random() * 20);
      const words = Array.from({ length: n }, () => pick(WORDS));
      if (random() < 0.3) words[0] = words[0]!.charAt(0).toUpperCase() + words[0]!.slice(1);
      part = `${words.join(" ")}${pick([". ", ", ", "! ", "? ", ".\n", "\n\n", " — "])}`;
    } else if (r < 0.7) {
      part = pick(CODE);
    } else if (r < 0.82) {
      part = `${Math.floor(random() * 1e6)} ${(random() * 1000).toFixed(3)} ${-Math.floor(random() * 99)}% 0x${Math.floor(random() * 65535).toString(16)} `;
    } else {
      part = `${pick(SAMPLES)}\n`;
    }
    parts.push(part);
    size += Buffer.byteLength(part);
  }
  return parts.join("");
}

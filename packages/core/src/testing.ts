/**
 * `@forge/core/testing`: what forge's own fuzz tests share — a seeded mutator of YAML texts
 * (bytes flipped, cut and repeated; metacharacters, anchors and alias bombs inserted; numbers
 * made huge; nesting made deep; keys and values swapped for hostile ones). Not part of the
 * runtime API.
 */

const META = [
  ": ",
  "- ",
  "? ",
  "[",
  "]",
  "{",
  "}",
  ",",
  "# ",
  "&a ",
  "*a",
  "!!str ",
  "!tag ",
  "|",
  ">-",
  "'",
  '"',
  "%YAML 1.2\n",
  "---\n",
  "...\n",
  "<<: *a\n",
  "\n",
  "\t",
  "\r\n",
  "\u0000",
  "\ufeff",
  "\\",
  "{{",
  "}}",
  "{{nope}}",
  "@",
  "`",
  "~",
];

const NUMBERS = [
  "0",
  "-1",
  "1e308",
  "1e309",
  "-1e309",
  ".inf",
  "-.inf",
  ".nan",
  "99999999999999999999999",
  "0x7fffffff",
  "0o777",
  "1.5",
  "1_000",
  "2147483648",
  "-0",
];

const VALUES = ["[]", "{}", "null", "~", "true", "''", '""', "[[]]", "{a: {b: {c: 1}}}", "*a"];

/** A uniform random number in [0, 1), seeded (e.g. mulberry32). */
export type Random = () => number;
export const int = (random: Random, n: number) => Math.floor(random() * n);
export const pick = <T>(random: Random, list: readonly T[]): T => list[int(random, list.length)]!;

/** One mutation of a YAML text, chosen and parameterised by `random`. */
export function mutateYaml(text: string, random: Random): string {
  const at = () => int(random, text.length + 1);
  switch (int(random, 10)) {
    case 0: {
      // flip a byte (any code unit 0–255, or a printable one)
      const i = int(random, Math.max(text.length, 1));
      const byte = random() < 0.5 ? int(random, 256) : 32 + int(random, 95);
      return text.slice(0, i) + String.fromCharCode(byte) + text.slice(i + 1);
    }
    case 1: {
      const i = at();
      return text.slice(0, i) + text.slice(i + 1 + int(random, 24));
    }
    case 2: {
      const i = at();
      const span = text.slice(i, i + 1 + int(random, 60));
      const j = at();
      return text.slice(0, j) + span.repeat(1 + int(random, 4)) + text.slice(j);
    }
    case 3: {
      const i = at();
      return text.slice(0, i) + pick(random, META) + text.slice(i);
    }
    case 4: {
      // an anchor on one value, aliases to it elsewhere (sometimes a whole alias bomb)
      const lines = text.split("\n");
      const i = int(random, lines.length);
      lines[i] = lines[i]!.replace(/: (\S)/, ": &x $1");
      const j = int(random, lines.length);
      lines[j] = lines[j]!.replace(/: .*$/, ": *x");
      if (random() < 0.3) {
        const levels = 4 + int(random, 8);
        let bomb = "lol0: &l0 [a, a, a, a, a, a, a, a, a]\n";
        for (let k = 1; k <= levels; k++)
          bomb += `lol${k}: &l${k} [${Array.from({ length: 9 }, () => `*l${k - 1}`).join(", ")}]\n`;
        lines.splice(int(random, lines.length), 0, ...bomb.trimEnd().split("\n"));
      }
      return lines.join("\n");
    }
    case 5: {
      // a number (or a value that should be one) made huge, negative, odd
      const matches = [...text.matchAll(/-?\d+(\.\d+)?/g)];
      if (matches.length === 0) return text + `rounds: ${pick(random, NUMBERS)}\n`;
      const m = pick(random, matches);
      return text.slice(0, m.index) + pick(random, NUMBERS) + text.slice(m.index! + m[0].length);
    }
    case 6: {
      // deep nesting, flow or block or indentation
      const depth = pick(random, [10, 63, 65, 70, 500, 5000, 100_000]);
      const i = at();
      const nest = pick(random, [
        () => `${"[".repeat(depth)}${"]".repeat(depth)}`,
        () => `${"{a: ".repeat(depth)}1${"}".repeat(depth)}`,
        () => `\n${"- ".repeat(depth)}x\n`,
        () =>
          `\n${Array.from({ length: Math.min(depth, 2000) }, (_, k) => `${" ".repeat(k)}k${k}:`).join("\n")} 1\n`,
      ])();
      return text.slice(0, i) + nest + text.slice(i);
    }
    case 7: {
      // a line duplicated (duplicate keys) or two lines swapped
      const lines = text.split("\n");
      const i = int(random, lines.length);
      const j = int(random, lines.length);
      if (random() < 0.5) lines.splice(j, 0, lines[i]!);
      else [lines[i], lines[j]] = [lines[j]!, lines[i]!];
      return lines.join("\n");
    }
    case 8: {
      // a value replaced by one of another type
      const matches = [...text.matchAll(/: ([^\n]+)/g)];
      if (matches.length === 0) return text;
      const m = pick(random, matches);
      const start = m.index! + 2;
      return text.slice(0, start) + pick(random, VALUES) + text.slice(start + m[1]!.length);
    }
    default: {
      // a key renamed (unknown keys, prototype-ish names)
      const keys = [...text.matchAll(/^(\s*-?\s*)(\w+):/gm)];
      if (keys.length === 0) return text;
      const m = pick(random, keys);
      const name = pick(random, ["__proto__", "constructor", "toString", "data", "items", "id"]);
      const start = m.index! + m[1]!.length;
      return text.slice(0, start) + name + text.slice(start + m[2]!.length);
    }
  }
}

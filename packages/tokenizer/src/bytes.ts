/**
 * Bytes and the GPT-2 byte↔unicode map.
 *
 * Byte-level BPE works on UTF-8 bytes. To store byte sequences as JSON strings (vocab.json,
 * tokenizer.json), GPT-2 maps every byte to a printable code point: the 188 printable Latin-1
 * bytes map to themselves and the other 68 to U+0100 upwards, so a space is "Ġ" (U+0120) and
 * a newline "Ċ" (U+010A).
 */

function buildByteToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b); // ! .. ~
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b); // ¡ .. ¬
  for (let b = 0xae; b <= 0xff; b++) printable.push(b); // ® .. ÿ
  const map = new Array<string>(256);
  const isPrintable = new Set(printable);
  let next = 0;
  for (let b = 0; b < 256; b++) {
    if (isPrintable.has(b)) map[b] = String.fromCharCode(b);
    else map[b] = String.fromCharCode(256 + next++);
  }
  return map;
}

/** byte value → its one-character stand-in. */
export const BYTE_TO_UNICODE: readonly string[] = buildByteToUnicode();

const UNICODE_TO_BYTE = new Map<string, number>(BYTE_TO_UNICODE.map((ch, b) => [ch, b]));

/** Bytes → GPT-2's printable string form ("Ġthe" for " the"). */
export function bytesToToken(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += BYTE_TO_UNICODE[b]!;
  return out;
}

/** GPT-2's printable string form → bytes; undefined if a character is not a byte stand-in. */
export function tokenToBytes(token: string): Uint8Array | undefined {
  const bytes = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const b = UNICODE_TO_BYTE.get(token[i]!);
    if (b === undefined) return undefined;
    bytes[i] = b;
  }
  return bytes;
}

/**
 * UTF-8 encode `text[start, end)` into `out` (which must hold 3 bytes per code unit);
 * returns the byte count. A lone surrogate becomes U+FFFD (EF BF BD), as TextEncoder does.
 */
export function utf8Encode(text: string, start: number, end: number, out: Uint8Array): number {
  let n = 0;
  for (let i = start; i < end; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) {
      out[n++] = c;
    } else if (c < 0x800) {
      out[n++] = 0xc0 | (c >> 6);
      out[n++] = 0x80 | (c & 0x3f);
    } else if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < end ? text.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        i++;
        out[n++] = 0xf0 | (c >> 18);
        out[n++] = 0x80 | ((c >> 12) & 0x3f);
        out[n++] = 0x80 | ((c >> 6) & 0x3f);
        out[n++] = 0x80 | (c & 0x3f);
      } else {
        out[n++] = 0xef;
        out[n++] = 0xbf;
        out[n++] = 0xbd;
      }
    } else {
      out[n++] = 0xe0 | (c >> 12);
      out[n++] = 0x80 | ((c >> 6) & 0x3f);
      out[n++] = 0x80 | (c & 0x3f);
    }
  }
  return n;
}

const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** The string these bytes spell, or undefined when they are not complete, valid UTF-8. */
export function utf8DecodeStrict(bytes: Uint8Array): string | undefined {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return undefined;
  }
}

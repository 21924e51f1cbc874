/**
 * Build a tokenizer from a tiktoken-style rank table (token bytes by rank = id), as shipped
 * by tiktoken, js-tiktoken and gpt-tokenizer, by recovering the merge list.
 */
import { pairKey } from "./bpe.js";
import { TokenizerError } from "./errors.js";
import type { PatternName } from "./pretokenize.js";
import { Tokenizer } from "./tokenizer.js";

/** One rank entry: the token's text (when it is valid UTF-8) or its bytes. */
export type RankEntry = string | ArrayLike<number>;

export interface FromRanksOptions {
  specialTokens?: ReadonlyMap<string, number> | Record<string, number>;
  pattern?: PatternName | string;
  source?: string;
}

/**
 * tiktoken merges the adjacent pair whose concatenation has the lowest rank. That equals BPE
 * with one merge per multi-byte token — the split that BPE over the lower ranks leaves when
 * run on the token's own bytes — ranked by the token's rank.
 */
export function fromTiktokenRanks(
  ranks: ReadonlyArray<RankEntry | undefined>,
  options: FromRanksOptions = {},
): Tokenizer {
  const source = options.source ?? "rank table";
  const encoder = new TextEncoder();
  const tokens: (Uint8Array | undefined)[] = ranks.map((entry) =>
    entry === undefined
      ? undefined
      : typeof entry === "string"
        ? encoder.encode(entry)
        : Uint8Array.from(entry),
  );
  const byteId = new Int32Array(256).fill(-1);
  tokens.forEach((bytes, id) => {
    if (bytes?.length === 1) byteId[bytes[0]!] = id;
  });
  const rankOf = new Map<number, number>();
  const mergedOf: number[] = [];
  const merges: [number, number][] = [];
  let syms = new Int32Array(64);
  tokens.forEach((bytes, id) => {
    if (!bytes || bytes.length < 2) return;
    if (syms.length < bytes.length) syms = new Int32Array(bytes.length * 2);
    for (let i = 0; i < bytes.length; i++) {
      const b = byteId[bytes[i]!]!;
      if (b < 0) {
        throw new TokenizerError(
          "E_FORMAT",
          `${source}: byte 0x${bytes[i]!.toString(16)} has no single-byte token`,
        );
      }
      syms[i] = b;
    }
    let n = bytes.length;
    while (n > 2) {
      let best = Number.MAX_SAFE_INTEGER;
      let at = -1;
      for (let p = 0; p < n - 1; p++) {
        const rank = rankOf.get(pairKey(syms[p]!, syms[p + 1]!));
        if (rank !== undefined && rank < best) {
          best = rank;
          at = p;
        }
      }
      if (at < 0) break;
      syms[at] = mergedOf[best]!;
      syms.copyWithin(at + 1, at + 2, n);
      n--;
    }
    if (n !== 2) return; // unreachable by a single merge: tiktoken can never produce it either
    const key = pairKey(syms[0]!, syms[1]!);
    if (rankOf.has(key)) return;
    rankOf.set(key, merges.length);
    mergedOf.push(id);
    merges.push([syms[0]!, syms[1]!]);
  });
  return new Tokenizer({
    tokens,
    merges,
    specialTokens: options.specialTokens ?? {},
    pattern: options.pattern ?? "gpt2",
    ignoreMerges: true,
    source,
  });
}

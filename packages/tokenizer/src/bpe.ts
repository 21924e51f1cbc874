/**
 * The byte-pair merge core: ranked merges applied to the UTF-8 bytes of one piece.
 *
 * A merge (left, right) → merged has a rank (its position in the merge list); at each step the
 * adjacent pair with the lowest rank merges, leftmost first. With GPT-2's merge list this is
 * exactly tiktoken's "lowest-ranked concatenation first".
 */
import { TokenizerError } from "./errors.js";

/** Pair keys pack two ids into one number: left · 2^21 + right (ids below 2,097,152). */
const SHIFT = 2 ** 21;
export const MAX_VOCAB = SHIFT;

export function pairKey(left: number, right: number): number {
  return left * SHIFT + right;
}

/** Pieces longer than this use the O(n log n) heap merge instead of the O(n²) scan. */
const LONG_PIECE = 96;

export class BytePairEncoder {
  /** rank of each merge, by pair key */
  private readonly rankOf = new Map<number, number>();
  /** merged id, by rank */
  private readonly mergedOf: Int32Array;
  /** token id of each single byte */
  readonly byteIds = new Int32Array(256);
  private scratch = new Int32Array(256);

  /**
   * @param merges pairs of ids in rank order, each with the id of the merged token
   * @param longPiece pieces longer than this many bytes use the heap merge (tests vary it)
   */
  constructor(
    merges: ReadonlyArray<readonly [number, number, number]>,
    byteIds: Int32Array,
    private readonly longPiece = LONG_PIECE,
  ) {
    this.byteIds.set(byteIds);
    this.mergedOf = new Int32Array(merges.length);
    merges.forEach(([left, right, merged], rank) => {
      const key = pairKey(left, right);
      if (!this.rankOf.has(key)) this.rankOf.set(key, rank);
      this.mergedOf[rank] = merged;
    });
  }

  get mergeCount(): number {
    return this.mergedOf.length;
  }

  /** Merge the bytes `bytes[0, length)` and push the resulting ids onto `out`. */
  encode(bytes: Uint8Array, length: number, out: number[]): void {
    if (length === 0) return;
    if (length > this.longPiece) {
      this.encodeLong(bytes, length, out);
      return;
    }
    if (this.scratch.length < length) this.scratch = new Int32Array(length * 2);
    const syms = this.scratch;
    for (let i = 0; i < length; i++) syms[i] = this.byteIds[bytes[i]!]!;
    let n = length;
    const rankOf = this.rankOf;
    while (n > 1) {
      let bestRank = Number.MAX_SAFE_INTEGER;
      for (let p = 0; p < n - 1; p++) {
        const rank = rankOf.get(syms[p]! * SHIFT + syms[p + 1]!);
        if (rank !== undefined && rank < bestRank) bestRank = rank;
      }
      if (bestRank === Number.MAX_SAFE_INTEGER) break;
      const merged = this.mergedOf[bestRank]!;
      let w = 0;
      for (let p = 0; p < n; ) {
        if (p < n - 1 && rankOf.get(syms[p]! * SHIFT + syms[p + 1]!) === bestRank) {
          syms[w++] = merged;
          p += 2;
        } else {
          syms[w++] = syms[p++]!;
        }
      }
      n = w;
    }
    for (let i = 0; i < n; i++) out.push(syms[i]!);
  }

  /**
   * The same merges for long pieces in O(n log n): symbols in a linked list, candidate pairs in
   * a binary heap ordered by (rank, position), stale entries skipped when popped.
   */
  private encodeLong(bytes: Uint8Array, length: number, out: number[]): void {
    const sym = new Int32Array(length);
    const next = new Int32Array(length);
    const prev = new Int32Array(length);
    const alive = new Uint8Array(length).fill(1);
    for (let i = 0; i < length; i++) {
      sym[i] = this.byteIds[bytes[i]!]!;
      next[i] = i + 1 < length ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // heap entries: rank * 2^32 + position, smallest first (rank < 2^21, position < 2^32)
    const heap: number[] = [];
    const push = (value: number) => {
      heap.push(value);
      let i = heap.length - 1;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (heap[parent]! <= value) break;
        heap[i] = heap[parent]!;
        i = parent;
      }
      heap[i] = value;
    };
    const pop = (): number => {
      const top = heap[0]!;
      const last = heap.pop()!;
      if (heap.length > 0) {
        let i = 0;
        for (;;) {
          const l = 2 * i + 1;
          if (l >= heap.length) break;
          const r = l + 1;
          const c = r < heap.length && heap[r]! < heap[l]! ? r : l;
          if (heap[c]! >= last) break;
          heap[i] = heap[c]!;
          i = c;
        }
        heap[i] = last;
      }
      return top;
    };
    const consider = (i: number) => {
      const j = next[i]!;
      if (j < 0) return;
      const rank = this.rankOf.get(sym[i]! * SHIFT + sym[j]!);
      if (rank !== undefined) push(rank * 2 ** 32 + i);
    };
    for (let i = 0; i < length - 1; i++) consider(i);
    while (heap.length > 0) {
      const entry = pop();
      const rank = Math.floor(entry / 2 ** 32);
      const i = entry - rank * 2 ** 32;
      const j = next[i]!;
      // stale: position merged away, or its pair changed since the entry was pushed
      if (!alive[i] || j < 0 || this.rankOf.get(sym[i]! * SHIFT + sym[j]!) !== rank) continue;
      sym[i] = this.mergedOf[rank]!;
      alive[j] = 0;
      next[i] = next[j]!;
      if (next[j]! >= 0) prev[next[j]!] = i;
      if (prev[i]! >= 0) consider(prev[i]!);
      consider(i);
    }
    for (let i = 0; i >= 0; i = next[i]!) out.push(sym[i]!);
  }
}

/** Validation helper shared by the loaders: every byte needs a single-byte token. */
export function byteIdsOf(
  tokens: ReadonlyArray<Uint8Array | undefined>,
  source: string,
): Int32Array {
  const byteIds = new Int32Array(256).fill(-1);
  tokens.forEach((bytes, id) => {
    if (bytes && bytes.length === 1 && byteIds[bytes[0]!] === -1) byteIds[bytes[0]!] = id;
  });
  const missing = [...byteIds.keys()].filter((b) => byteIds[b] === -1);
  if (missing.length > 0) {
    throw new TokenizerError(
      "E_FORMAT",
      `${source}: a byte-level vocabulary needs a token for each of the 256 bytes; missing ${missing.length} (first: 0x${missing[0]!.toString(16).padStart(2, "0")})`,
    );
  }
  return byteIds;
}

/**
 * The remote teacher's token handling, on a real tokenizer and replies shaped as the OpenAI API
 * shapes them (the HTTP side is tested against forge serve in apps/cli's remote-teacher test).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { exitCodeFor } from "@forge/core";
import type { ChatCompletion } from "@forge/eval";
import { type Tokenizer, train as trainTokenizer } from "@forge/tokenizer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Trajectory } from "./records.js";
import {
  checkRetokenization,
  MAX_RETOKENIZED_SHARE,
  mapReply,
  type RemoteTeacher,
  readPartialRollout,
  TokenMap,
} from "./remote.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-remote-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let tokenizer: Tokenizer;
let teacher: RemoteTeacher;
beforeAll(() => {
  const corpus = Array.from(
    { length: 40 },
    (_, i) =>
      `Arr matey, the ship sails at dawn. What is ${i} plus ${i + 1}? The opposite of hot is cold.`,
  );
  tokenizer = trainTokenizer(corpus, { vocabSize: 320 });
  teacher = {
    client: undefined as never, // mapReply reads no client
    model: "tiny",
    url: "http://127.0.0.1:1",
    tokens: new TokenMap(tokenizer),
    concurrency: 1,
  };
});

/** A token as the API names it: its text and bytes. */
const entry = (id: number, logprob: number) => ({
  token: tokenizer.decode([id]),
  logprob,
  bytes: Array.from(tokenizer.tokenBytesOf(id)),
});

/** A chat completion whose reply is `ids`, each position offering `alternatives` (best first). */
function reply(
  ids: number[],
  finish: "stop" | "length",
  alternatives: (r: number) => number[] = (r) => [ids[r]!, (ids[r]! + 1) % 256, 5],
  text = tokenizer.decode(ids, { skipSpecial: true }),
): ChatCompletion {
  return {
    id: "x",
    object: "chat.completion",
    created: 0,
    model: "tiny",
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: text },
        finish_reason: finish,
        logprobs: {
          content: ids.map((id, r) => ({
            ...entry(id, -0.5),
            top_logprobs: alternatives(r).map((a, j) => entry(a, -0.5 - j)),
          })),
        },
      },
    ],
  };
}

describe("TokenMap", () => {
  it("maps a token by its bytes, by its text without bytes, and by its stored form", () => {
    const ids = tokenizer.encode(" the ship sails");
    const map = new TokenMap(tokenizer);
    for (const id of ids) {
      expect(map.idOf(entry(id, 0), "here")).toBe(id);
      expect(map.idOf({ token: tokenizer.decode([id]), bytes: null }, "here")).toBe(id);
      expect(map.idOf({ token: tokenizer.idToToken(id) }, "here")).toBe(id);
    }
    const eot = tokenizer.stopIds()[0]!;
    expect(map.idOf(entry(eot, 0), "here")).toBe(eot);
  });

  it("refuses a token that is no single student token, naming it (exit 2)", () => {
    const map = new TokenMap(tokenizer);
    let error: unknown;
    try {
      map.idOf({ token: " xylophone", bytes: null }, "stimulus s-1, position 3");
    } catch (e) {
      error = e;
    }
    expect((error as Error).message).toContain(`token " xylophone" (stimulus s-1, position 3)`);
    expect((error as Error).message).toContain("is no single token of the student's vocabulary");
    expect(exitCodeFor(error)).toBe(2);
  });
});

describe("mapReply", () => {
  it("maps the reply and its top-K; a stop gets the stop token with the sampled target", () => {
    const ids = tokenizer.encode("Arr matey, the ship sails at dawn.");
    const eot = tokenizer.stopIds()[0]!;
    const mapped = mapReply(reply(ids, "stop"), teacher, 4, "stimulus s");
    expect(mapped.tokenIds).toEqual([...ids, eot]);
    expect(mapped.finishReason).toBe("stop");
    expect(mapped.logprobs).toHaveLength(ids.length);
    expect(mapped.topK.ids).toHaveLength(ids.length + 1);
    for (const [r, row] of mapped.topK.ids.entries()) {
      expect(row).toHaveLength(4);
      expect(new Set(row).size).toBe(4);
      if (r < ids.length) {
        expect(row[0]).toBe(ids[r]);
        expect(mapped.topK.logprobs[r]!.slice(0, 3)).toEqual([-0.5, -1.5, -2.5]);
        expect(mapped.topK.logprobs[r]![3]).toBeLessThan(-1000); // padding: probability 0
      }
    }
    expect(mapped.topK.ids.at(-1)![0]).toBe(eot);
    expect(mapped.topK.logprobs.at(-1)![0]).toBe(0);
    // a reply cut by the length limit ends without a stop token
    expect(mapReply(reply(ids, "length"), teacher, 4, "s").tokenIds).toEqual(ids);
  });

  it("refuses a reply whose tokens do not read as its text, and a reply without logprobs", () => {
    const ids = tokenizer.encode("the ship sails");
    expect(() => mapReply(reply(ids, "stop", undefined, "the ship sank"), teacher, 4, "s")).toThrow(
      /the teacher's tokenizer is not the student's: the reply to s reads "the ship sank"/,
    );
    const bare = reply(ids, "stop");
    bare.choices[0]!.logprobs = null;
    expect(() => mapReply(bare, teacher, 4, "s")).toThrow(/--max-logprobs 4/);
  });
});

describe("checkRetokenization", () => {
  const trajectory = (id: string, ids: number[]): Trajectory => ({
    id,
    stimulusId: "s",
    sample: 0,
    text: tokenizer.decode(ids),
    tokenIds: ids,
    finishReason: "length",
  });
  /** "the ship" written byte by byte: tokens the student has, a split it never makes. */
  const split = () => Array.from(Buffer.from(" the ship")).map((b) => tokenizer.byteIds[b]!);

  it("accepts canonical trajectories and a few split ones; refuses many, naming one", () => {
    const canonical = (i: number) => trajectory(`c${i}`, tokenizer.encode(` What is ${i} plus 2?`));
    expect(tokenizer.encode(tokenizer.decode(split()))).not.toEqual(split());
    const few = [...Array.from({ length: 8 }, (_, i) => canonical(i)), trajectory("odd", split())];
    expect(1 / few.length).toBeLessThanOrEqual(MAX_RETOKENIZED_SHARE);
    expect(() => checkRetokenization(few, tokenizer)).not.toThrow();
    const many = [canonical(1), trajectory("odd-1", split()), trajectory("odd-2", split())];
    expect(() => checkRetokenization(many, tokenizer)).toThrow(
      /2 of 3 trajectories re-tokenize differently .* e\.g\. trajectory odd-1 at its token " " \(position 0\)/,
    );
  });
});

describe("readPartialRollout", () => {
  it("keeps whole lines, ignores a torn last line, refuses a torn line in the middle", async () => {
    const t = {
      schema: 1,
      id: "s#0",
      stimulusId: "s",
      sample: 0,
      text: "a",
      tokenIds: [1, 2],
      finishReason: "length",
    };
    const file = path.join(dir, "partial.jsonl");
    writeFileSync(
      file,
      `${JSON.stringify(t)}\n${JSON.stringify({ ...t, id: "s#1" }).slice(0, 20)}`,
    );
    expect((await readPartialRollout(file)).map((x) => x.id)).toEqual(["s#0"]);
    writeFileSync(file, `{"torn\n${JSON.stringify(t)}\n${JSON.stringify(t)}\n`);
    await expect(readPartialRollout(file)).rejects.toThrow(/partial\.jsonl:1: not JSON/);
    expect(await readPartialRollout(path.join(dir, "absent.jsonl"))).toEqual([]);
  });
});

import { describe, expect, it } from "vitest";
import { formatDuration, ProgressBar } from "./progress.js";

function fakeTerminal() {
  const writes: string[] = [];
  const stream = {
    isTTY: true,
    columns: 120,
    write: (s: string) => writes.push(s),
  } as unknown as NodeJS.WriteStream;
  return { stream, writes };
}

describe("ProgressBar", () => {
  it("draws percentage, counts, rate and ETA on a terminal, then clears its line", () => {
    const { stream, writes } = fakeTerminal();
    const bar = new ProgressBar("train", { total: 200, unit: "steps", stream });
    bar.update(50, undefined, "loss 2.31");
    expect(writes).toHaveLength(1);
    expect(writes[0]!.startsWith("\r\x1b[2K")).toBe(true);
    expect(writes[0]).toContain("25%");
    expect(writes[0]).toContain("50/200 steps");
    expect(writes[0]).toMatch(/ETA \d+:\d\d/);
    expect(writes[0]).toContain("loss 2.31");
    bar.update(60); // within 100 ms of the last draw: throttled
    expect(writes).toHaveLength(1);
    bar.stop();
    expect(writes.at(-1)).toBe("\r\x1b[2K");
  });

  it("draws nothing when the stream is not a terminal", () => {
    const writes: string[] = [];
    const stream = {
      isTTY: false,
      write: (s: string) => writes.push(s),
    } as unknown as NodeJS.WriteStream;
    const bar = new ProgressBar("x", { total: 10, stream });
    bar.update(5);
    bar.stop();
    expect(writes).toEqual([]);
  });

  it("formats durations as m:ss or h:mm:ss", () => {
    expect(formatDuration(5)).toBe("0:05");
    expect(formatDuration(125)).toBe("2:05");
    expect(formatDuration(3725)).toBe("1:02:05");
    expect(formatDuration(Number.NaN)).toBe("--:--");
  });
});

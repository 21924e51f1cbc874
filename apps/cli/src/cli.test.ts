import os from "node:os";
import { loadNativeGemm } from "@forge/model/internal";
import { describe, expect, it } from "vitest";
import { forge } from "./run-cli.js";

/** Whether this machine builds forge's native matmul (a compiler, Node's headers, OpenBLAS). */
const nativeAvailable = loadNativeGemm().module !== undefined;

describe("forge CLI", () => {
  it("--help lists the commands", async () => {
    const run = await forge(["--help"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatchSnapshot();
  });

  it("--version prints the package version", async () => {
    const { version } = (await import("../package.json", { with: { type: "json" } })).default;
    const run = await forge(["--version"]);
    expect(run.code).toBe(0);
    expect(run.stdout.trim()).toBe(
      `forge/${version} ${process.platform}-${process.arch} node-${process.version}`,
    );
  });

  it("an unknown command exits 2 and points at --help", async () => {
    const run = await forge(["bake-it-now"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(
      'forge: unknown command "bake-it-now"; run `forge --help` for the list\n',
    );
  });

  it("an unknown option exits 2", async () => {
    const run = await forge(["doctor", "--fast"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("Unknown option `--fast`");
  });
});

describe("forge doctor", () => {
  it("--json reports the automatically chosen backend and why faster ones were skipped", async () => {
    const run = await forge(["doctor", "--json", "--seconds", "0.2"]);
    expect(run.code).toBe(0);
    const report = JSON.parse(run.stdout);
    expect(report.node.ok).toBe(true);
    expect(report.cpu.cores).toBeGreaterThan(0);
    expect(report.memory.totalBytes).toBeGreaterThan(0);
    expect(["tensorflow", "wasm"]).toContain(report.backend.name);
    expect(report.backend.forced).toBe(false);
    if (report.backend.name === "wasm") {
      expect(report.backend.attempts[0].name).toBe("tensorflow");
      expect(report.backend.attempts[0].reason).toMatch(/tfjs-node/);
    }
    expect(report.matmul.gflops).toBeGreaterThan(0);
    expect(report.matmul.iterations).toBeGreaterThan(0);
  });

  it("FORGE_BACKEND=cpu forces the cpu backend", async () => {
    const run = await forge(["doctor", "--json", "--seconds", "0.1"], { FORGE_BACKEND: "cpu" });
    expect(run.code).toBe(0);
    const report = JSON.parse(run.stdout);
    expect(report.backend).toMatchObject({
      name: "cpu",
      forced: true,
      attempts: [{ name: "cpu", ok: true }],
    });
  });

  it("text output names the backend and the reason for each skipped one", async () => {
    const run = await forge(["doctor", "--seconds", "0.1"], {
      FORGE_BACKEND: "wasm",
      FORGE_WASM_THREADS: "",
      FORGE_NATIVE: "0",
    });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^backend {2}wasm \(forced, 1 thread, simd build, tfjs [\d.]+\)$/m);
    expect(run.stdout).toContain(
      "threaded-simd build not used: one thread is the default for short commands (training commands use the idle cores); FORGE_WASM_THREADS=n runs it on n threads",
    );
    expect(run.stdout).toMatch(/^matmul {3}XNNPACK \(wasm\): [\d.]+ GFLOP\/s/m);
    expect(run.stdout).toContain("native OpenBLAS not used: FORGE_NATIVE=0");
  });

  it.skipIf(!nativeAvailable)(
    "FORGE_NATIVE=1 runs the products on the native OpenBLAS addon, on the threads asked for",
    async () => {
      const run = await forge(["doctor", "--seconds", "0.1"], {
        FORGE_BACKEND: "wasm",
        FORGE_WASM_THREADS: "2",
        FORGE_NATIVE: "1",
      });
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(
        /^backend {2}wasm \(forced, 2 threads, simd build, tfjs [\d.]+\)$/m,
      );
      expect(run.stdout).toMatch(/^matmul {3}native OpenBLAS on 2 threads: [\d.]+ GFLOP\/s/m);
      expect(run.stdout).toMatch(
        /addon: .*forge_gemm-[0-9a-f]{16}\.node; FORGE_NATIVE=0 turns it off/,
      );
      const json = JSON.parse(
        (await forge(["doctor", "--json", "--seconds", "0.1"], { FORGE_NATIVE: "1" })).stdout,
      );
      // unasked, the pool takes the cores (at most 4): its threads sleep between products
      expect(json.backend.matmul).toMatchObject({
        engine: "openblas",
        threads: Math.min(4, os.availableParallelism()),
      });
    },
  );

  it("a FORGE_NATIVE that is not 0 or 1 exits 2 naming what is accepted", async () => {
    const run = await forge(["doctor"], { FORGE_BACKEND: "wasm", FORGE_NATIVE: "maybe" });
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(
      'forge: FORGE_NATIVE="maybe" is not understood; accepted: 0 (never use the native matmul), 1 (require it), or unset (use it where it builds)\n',
    );
  });

  it("FORGE_WASM_THREADS=2 runs the threaded SIMD build on 2 threads, and says so", async () => {
    const run = await forge(["doctor", "--seconds", "0.1"], {
      FORGE_BACKEND: "wasm",
      FORGE_WASM_THREADS: "2",
      FORGE_NATIVE: "0",
    });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(
      /^backend {2}wasm \(forced, 2 threads, threaded-simd build, tfjs [\d.]+\)$/m,
    );
  });

  it("a FORGE_WASM_THREADS that is not a thread count exits 2", async () => {
    const run = await forge(["doctor"], { FORGE_BACKEND: "wasm", FORGE_WASM_THREADS: "many" });
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(
      'forge: FORGE_WASM_THREADS="many" is not a thread count; accepted: an integer from 1 to 8\n',
    );
  });

  it("an unknown FORGE_BACKEND exits 2 naming the accepted values", async () => {
    const run = await forge(["doctor"], { FORGE_BACKEND: "gpu" });
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(
      'forge: FORGE_BACKEND="gpu" is not a backend; accepted: tensorflow, wasm, cpu\n',
    );
  });

  it("a bad --seconds exits 2", async () => {
    const run = await forge(["doctor", "--seconds", "0"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("--seconds must be a number in (0, 60]");
  });
});

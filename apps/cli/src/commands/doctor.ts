import os from "node:os";
import { BACKEND_NAMES, type BackendInfo, type BackendName, initBackend } from "@forge/model";
import { type MatMulProbeResult, probeMatMul } from "@forge/model/internal";
import pc from "picocolors";
import { UsageError } from "../errors.js";

const REQUIRED_NODE = [20, 19] as const;

export interface DoctorOptions {
  json?: boolean;
  seconds?: number | string;
  backend?: string;
}

export interface DoctorReport {
  forge: string;
  node: { version: string; required: string; ok: boolean };
  platform: { os: string; release: string; arch: string };
  cpu: { model: string; cores: number };
  memory: { totalBytes: number; freeBytes: number };
  backend: BackendInfo;
  matmul: MatMulProbeResult;
}

function nodeVersionOk(version: string): boolean {
  const [major = 0, minor = 0] = version.replace(/^v/, "").split(".").map(Number);
  return major > REQUIRED_NODE[0] || (major === REQUIRED_NODE[0] && minor >= REQUIRED_NODE[1]);
}

function parseSeconds(value: number | string | undefined): number {
  const seconds = Number(value ?? 1);
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 60) {
    throw new UsageError(`--seconds must be a number in (0, 60]; got ${JSON.stringify(value)}`);
  }
  return seconds;
}

function parseBackend(value: string | undefined): BackendName | undefined {
  if (value === undefined) return undefined;
  if ((BACKEND_NAMES as readonly string[]).includes(value)) return value as BackendName;
  throw new UsageError(
    `--backend ${JSON.stringify(value)} is not a backend; accepted: ${BACKEND_NAMES.join(", ")}`,
  );
}

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;

function render(report: DoctorReport): string {
  const label = (text: string) => pc.bold(text.padEnd(9));
  const { backend, matmul } = report;
  const lines = [
    `${label("forge")}${report.forge}`,
    `${label("node")}${report.node.version} ${report.node.ok ? pc.green(`(ok, ${report.node.required})`) : pc.red(`(needs ${report.node.required})`)}`,
    `${label("os")}${report.platform.os} ${report.platform.release} ${report.platform.arch}`,
    `${label("cpu")}${report.cpu.model}, ${report.cpu.cores} core${report.cpu.cores === 1 ? "" : "s"}`,
    `${label("memory")}${gib(report.memory.totalBytes)} total, ${gib(report.memory.freeBytes)} free`,
    `${label("backend")}${pc.green(backend.name)} (${backend.forced ? "forced" : "auto"}, ${backend.threads} thread${backend.threads === 1 ? "" : "s"}${backend.wasmBuild ? `, ${backend.wasmBuild} build` : ""}, tfjs ${backend.tfjsVersion})`,
  ];
  if (
    backend.wasmBuild === "simd" &&
    backend.wasmThreadsReason &&
    backend.matmul?.engine !== "openblas"
  ) {
    lines.push(
      `${" ".repeat(9)}${pc.dim(`threaded-simd build not used: ${backend.wasmThreadsReason}; FORGE_WASM_THREADS=n runs it on n threads`)}`,
    );
  }
  for (const attempt of backend.attempts.filter((a) => !a.ok)) {
    lines.push(`${" ".repeat(9)}${pc.yellow(`${attempt.name} not used:`)} ${attempt.reason}`);
  }
  const engine = backend.matmul
    ? backend.matmul.engine === "openblas"
      ? `native OpenBLAS on ${backend.matmul.threads} thread${backend.matmul.threads === 1 ? "" : "s"}: `
      : "XNNPACK (wasm): "
    : "";
  lines.push(
    `${label("matmul")}${engine}${matmul.gflops.toFixed(2)} GFLOP/s (${matmul.size}×${matmul.size} float32, ${matmul.iterations} products in ${matmul.seconds.toFixed(2)} s)`,
  );
  if (backend.matmul?.engine === "openblas") {
    lines.push(
      `${" ".repeat(9)}${pc.dim(`addon: ${backend.matmul.library}; FORGE_NATIVE=0 turns it off`)}`,
    );
  } else if (backend.matmul?.reason) {
    lines.push(
      `${" ".repeat(9)}${pc.yellow("native OpenBLAS not used:")} ${backend.matmul.reason}`,
    );
  }
  return lines.join("\n");
}

export async function doctor(options: DoctorOptions, forgeVersion: string): Promise<number> {
  const seconds = parseSeconds(options.seconds);
  const forced = parseBackend(options.backend);
  const backend = await initBackend(forced ? { backend: forced } : {});
  const matmul = probeMatMul({ seconds });
  const cpus = os.cpus();
  const report: DoctorReport = {
    forge: forgeVersion,
    node: {
      version: process.version,
      required: `>=${REQUIRED_NODE.join(".")}`,
      ok: nodeVersionOk(process.version),
    },
    platform: { os: os.platform(), release: os.release(), arch: os.arch() },
    cpu: { model: cpus[0]?.model.trim() ?? "unknown", cores: os.availableParallelism() },
    memory: { totalBytes: os.totalmem(), freeBytes: os.freemem() },
    backend,
    matmul,
  };
  process.stdout.write(
    options.json ? `${JSON.stringify(report, null, 2)}\n` : `${render(report)}\n`,
  );
  return report.node.ok ? 0 : 1;
}

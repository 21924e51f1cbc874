/**
 * A hardware sampler: every N seconds, the process's CPU share (user + system time over wall
 * time, in percent of one core), resident memory, V8 heap, and system memory in use — and,
 * where the machine exposes them, the hottest thermal zone's temperature and the GPU's memory,
 * temperature and utilisation (nvidia-smi). Its timer is unref'd: it never keeps a finished
 * process alive.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import os from "node:os";
import type { HardwareSample } from "./types.js";

/** The hottest thermal zone in °C, or undefined where /sys/class/thermal has none. */
export function readTemperature(root = "/sys/class/thermal"): number | undefined {
  let hottest: number | undefined;
  try {
    for (const zone of readdirSync(root).filter((name) => name.startsWith("thermal_zone"))) {
      try {
        const milli = Number(readFileSync(`${root}/${zone}/temp`, "utf8").trim());
        if (Number.isFinite(milli)) hottest = Math.max(hottest ?? -Infinity, milli / 1000);
      } catch {
        // a zone without a readable temperature
      }
    }
  } catch {
    return undefined;
  }
  return hottest;
}

const missing = new Set<string>();

/**
 * The first GPU's memory, temperature and utilisation from `nvidia-smi` (or another command
 * that answers its query the same way), or undefined where there is none.
 */
export function readGpu(
  command = "nvidia-smi",
): { gpuMemoryBytes: number; gpuTemperatureC: number; gpuUtilizationPercent: number } | undefined {
  if (missing.has(command)) return undefined;
  try {
    const line = execFileSync(
      command,
      ["--query-gpu=memory.used,temperature.gpu,utilization.gpu", "--format=csv,noheader,nounits"],
      { encoding: "utf8", timeout: 2000, stdio: ["ignore", "pipe", "ignore"] },
    )
      .split("\n")[0]!
      .split(",")
      .map((v) => Number(v.trim()));
    const [memoryMiB, temperature, utilization] = line as [number, number, number];
    if (![memoryMiB, temperature, utilization].every(Number.isFinite)) return undefined;
    return {
      gpuMemoryBytes: memoryMiB * 1024 * 1024,
      gpuTemperatureC: temperature,
      gpuUtilizationPercent: utilization,
    };
  } catch {
    missing.add(command); // no such command here: do not ask again every sample
    return undefined;
  }
}

export class HardwareSampler {
  private timer: NodeJS.Timeout | undefined;
  private lastCpu = process.cpuUsage();
  private lastTime = performance.now();

  constructor(
    private readonly onSample: (sample: HardwareSample) => void,
    private readonly startedAt: number = performance.now(),
  ) {}

  /** Take one sample now. */
  sample(): HardwareSample {
    const now = performance.now();
    const cpu = process.cpuUsage(this.lastCpu);
    const wallMicros = Math.max(1, (now - this.lastTime) * 1000);
    this.lastCpu = process.cpuUsage();
    this.lastTime = now;
    const memory = process.memoryUsage();
    const sample: HardwareSample = {
      t: (now - this.startedAt) / 1000,
      cpuPercent: (100 * (cpu.user + cpu.system)) / wallMicros,
      rssBytes: memory.rss,
      heapUsedBytes: memory.heapUsed,
      systemUsedBytes: os.totalmem() - os.freemem(),
    };
    const temperature = readTemperature();
    if (temperature !== undefined) sample.temperatureC = temperature;
    Object.assign(sample, readGpu() ?? {});
    this.onSample(sample);
    return sample;
  }

  start(intervalSeconds: number): void {
    this.stop();
    this.timer = setInterval(() => this.sample(), intervalSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  get running(): boolean {
    return this.timer !== undefined;
  }
}

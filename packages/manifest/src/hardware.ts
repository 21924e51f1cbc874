/**
 * A hardware sampler: every N seconds, the process's CPU share (user + system time over wall
 * time, in percent of one core), resident memory, V8 heap, and system memory in use. Its timer
 * is unref'd: it never keeps a finished process alive.
 */
import os from "node:os";
import type { HardwareSample } from "./types.js";

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

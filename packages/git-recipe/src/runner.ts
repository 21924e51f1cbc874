/**
 * The contract between a bake repository and whatever bakes for it. `BakeRepo.run` hands a
 * `Runner` one job per phase — stim, rollout, bake — with everything the phase needs (the parent
 * model's directory, the prompt, the target, where to write); the runner does the work and
 * answers with counts or, for a bake, a model directory and its losses. This package never
 * loads a model: the CLI passes a runner built on @forge/baking.
 */
import type { BakeSpec, InputSpec, TeacherSpec } from "./input.js";

/** The phases of a bake, in the order they run. */
export type Operation = "stim" | "rollout" | "bake";
export const OPERATIONS: Operation[] = ["stim", "rollout", "bake"];

/** How a phase reports progress: `done` of `total` (when known), and a detail to show. */
export type Progress = (done: number, total?: number, detail?: string) => void;

/** Where a run came from, for its manifest. */
export interface GitInfo {
  commit: string;
  branch: string | null;
  dirty: boolean;
  commitCount: number;
  branchCount: number;
}

export interface PhaseJob {
  repository: string;
  /** The repository's root directory (relative paths in input.yml are relative to it). */
  root: string;
  git: GitInfo;
  /** A model directory: the parent model (the base, or the last bake's model from the store). */
  parentDir: string;
  parentModel: string | null;
  prompt: NonNullable<InputSpec["prompt"]>;
  target: NonNullable<InputSpec["target"]>;
  /** Where this input's stimuli and rollouts live. */
  workDir: string;
  stimFile: string;
  rolloutFile: string;
  /**
   * Generator paths may leave the repository (`forge run --allow-outside`). Paths were checked
   * against `root` when the input was read; a runner resolves them with @forge/core's
   * `resolveInside(root, …, { allowOutside })` again when it opens them.
   */
  allowOutside?: boolean;
  /** BAKE.teacher: a remote teacher writes the stimuli (`self`) and the rollouts. */
  teacher?: TeacherSpec;
}

export interface BakeJob extends PhaseJob {
  name: string;
  bake: BakeSpec;
  /** An empty directory for the runner's output. */
  outDir: string;
}

export interface BakeOutput {
  /** A complete model directory (weights merged) to store as the bake's model. */
  modelDir: string;
  steps: number;
  /** Training loss per step. */
  losses: number[];
  metrics?: Record<string, unknown>;
  /** A run manifest file to keep with the model in the store. */
  manifest?: string;
}

/** What runs the phases: the CLI passes one built on @forge/baking. */
export interface Runner {
  /** Generator types TARGET.generators may use. */
  generators: readonly string[];
  stim(job: PhaseJob, progress: Progress): Promise<number>;
  rollout(job: PhaseJob, progress: Progress): Promise<number>;
  bake(job: BakeJob, progress: Progress): Promise<BakeOutput>;
}

/** A bake's training loss, as recipe.yml records it. */
export interface LossSummary {
  latest: number;
  final: number;
  min: number;
  max: number;
}

/** A finished bake: its model in the store, and the commits that recorded it. */
export interface BakeResult {
  name: string;
  models: string[];
  parent: string | null;
  losses: LossSummary | null;
  /** The "Update recipe.yml after bake completion" commit. */
  commit?: string;
  /** The "Bake input" commit: the baked input.yml, when it was not committed already. */
  inputCommit?: string;
  metrics?: Record<string, unknown>;
}

/** The loss summary of a bake's per-step losses (null when it reported none). */
export function summariseLosses(losses: readonly number[]): LossSummary | null {
  if (losses.length === 0) return null;
  return {
    latest: losses.at(-1)!,
    final: losses.at(-1)!,
    min: Math.min(...losses),
    max: Math.max(...losses),
  };
}

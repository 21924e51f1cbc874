/**
 * The runner a bake repository calls (@forge/git-recipe's `Runner`, matched structurally: this
 * package imports no git code): stim, rollout and bake on an input.yml's PROMPT / TARGET / BAKE
 * sections, with the parent model loaded once per process. Paths from input.yml resolve inside
 * the repository unless the job allows more; outputs are written atomically. Recording (a run
 * manifest) is the caller's: a recorder hears the bake's events and stores what it wrote.
 */
import path from "node:path";
import { resolveInside, writeFileAtomic } from "@forge/core";
import { type GPT, loadModel } from "@forge/model";
import type { ChatMessage, Tokenizer } from "@forge/tokenizer";
import type { BakeSettings } from "./bake.js";
import { BakingError } from "./errors.js";
import { parseLayers } from "./halfbake.js";
import { type BakePrompt, readStimuli, readTrajectories, toJsonl } from "./records.js";
import {
  connectTeacher,
  finishPartialRollout,
  MAX_REMOTE_TOPK,
  type RemoteTeacherSpec,
  remoteRollout,
  remoteStimuli,
} from "./remote.js";
import { type RolloutSettings, resolveRollout, rollout } from "./rollout.js";
import { type BakeEvent, type BakeRunResult, bakePrompt } from "./run.js";
import { defaultStimuli, generateStimuli, STIM_TYPES, type StimSpec } from "./stim.js";

/** input.yml's BAKE section: the training settings a repository may set. */
export interface RepositoryBakeSettings {
  epochs?: number;
  steps?: number;
  batchSize?: number;
  learningRate?: number;
  rank?: number;
  alpha?: number;
  /** A `LOSS_KINDS` name (or "full", the older name of forward-kl). */
  loss?: string;
  lossBeta?: number;
  lossTemperature?: number;
  /** Adapters on these blocks only: indices, or a string of indices and ranges ("0-1,3"). */
  layers?: number[] | string;
  /** The adapter's strength ramps from `from` to 1 over `fraction` of training (default 0.5). */
  progressive?: { from: number; fraction?: number };
  validationFraction?: number;
  /** Early stopping: validation passes without improvement before training stops (0: off). */
  patience?: number;
  seed?: number;
}

/** A phase of a repository's input: what the runner reads (git-recipe's PhaseJob). */
export interface RepositoryJob {
  root: string;
  parentDir: string;
  prompt: { teacher: ChatMessage[]; student: ChatMessage[] };
  target: {
    generators: { type: string; [key: string]: unknown }[];
    rollout: Partial<RolloutSettings>;
  };
  stimFile: string;
  rolloutFile: string;
  allowOutside?: boolean;
  /** BAKE.teacher: a remote teacher writes the `self` stimuli and the rollouts. */
  teacher?: RemoteTeacherSpec;
}

/** A bake of a repository's input (git-recipe's BakeJob). */
export interface RepositoryBakeJob extends RepositoryJob {
  name: string;
  bake: RepositoryBakeSettings;
  /** An empty directory for the runner's output. */
  outDir: string;
}

/** Hears a bake's events; on success records it and says where (a manifest file, say). */
export interface BakeRecorder {
  event(event: BakeEvent): void;
  succeed(result: BakeRunResult): Promise<string | undefined>;
  fail(error: unknown): Promise<void>;
}

export interface RepositoryRunnerOptions {
  /** Called once, before the first model loads (e.g. to initialise and report the backend). */
  beforeLoad?: () => Promise<void>;
  /** Makes a recorder for a bake (the CLI's writes the run manifest). */
  recorder?: (job: RepositoryBakeJob, settings: Partial<BakeSettings>) => Promise<BakeRecorder>;
  /** The remote teacher's key (the CLI reads FORGE_TEACHER_API_KEY); never recorded. */
  teacherApiKey?: string;
}

type Progress = (done: number, total?: number, detail?: string) => void;

/** BAKE settings → the bake's settings (only what was given). */
export function repositoryBakeSettings(b: RepositoryBakeSettings): Partial<BakeSettings> {
  return {
    ...(b.epochs !== undefined ? { epochs: b.epochs } : {}),
    ...(b.steps !== undefined ? { steps: b.steps } : {}),
    ...(b.batchSize !== undefined ? { batchSize: b.batchSize } : {}),
    ...(b.learningRate !== undefined ? { learningRate: b.learningRate } : {}),
    ...(b.loss !== undefined ? { loss: b.loss as BakeSettings["loss"] } : {}),
    ...(b.lossBeta !== undefined ? { lossBeta: b.lossBeta } : {}),
    ...(b.lossTemperature !== undefined ? { lossTemperature: b.lossTemperature } : {}),
    ...(b.validationFraction !== undefined ? { validationFraction: b.validationFraction } : {}),
    ...(b.patience !== undefined ? { earlyStopping: { patience: b.patience, minDelta: 0 } } : {}),
    ...(b.seed !== undefined ? { seed: b.seed } : {}),
    ...(b.progressive !== undefined
      ? { progressive: { from: b.progressive.from, fraction: b.progressive.fraction ?? 0.5 } }
      : {}),
    ...(b.rank !== undefined || b.alpha !== undefined || b.layers !== undefined
      ? {
          lora: {
            ...(b.rank !== undefined ? { r: b.rank } : {}),
            ...(b.alpha !== undefined ? { alpha: b.alpha } : {}),
            ...(b.layers !== undefined
              ? {
                  layers: parseLayers(
                    Array.isArray(b.layers) ? b.layers.join(",") : b.layers,
                    "BAKE.layers",
                  ),
                }
              : {}),
          },
        }
      : {}),
  };
}

export function repositoryRunner(options: RepositoryRunnerOptions = {}) {
  let loaded: { dir: string; model: GPT; tokenizer: Tokenizer } | undefined;
  let prepared = false;
  const load = async (dir: string) => {
    if (loaded?.dir === dir) return loaded;
    loaded?.model.dispose();
    if (!prepared) {
      await options.beforeLoad?.();
      prepared = true;
    }
    const m = await loadModel(dir);
    if (!m.tokenizer) {
      m.model.dispose();
      throw new BakingError("E_INPUT", `the parent model ${dir} has no tokenizer.json`);
    }
    loaded = { dir, model: m.model, tokenizer: m.tokenizer };
    return loaded;
  };
  const remoteOf = async (job: RepositoryJob, tokenizer: Tokenizer) =>
    job.teacher
      ? await connectTeacher(
          job.teacher,
          tokenizer,
          options.teacherApiKey ? { apiKey: options.teacherApiKey } : {},
        )
      : undefined;
  const teacherOf = async (job: RepositoryJob) => {
    const { model, tokenizer } = await load(job.parentDir);
    return { model, tokenizer, prompt: job.prompt as BakePrompt };
  };
  return {
    generators: STIM_TYPES,

    async stim(job: RepositoryJob, progress: Progress): Promise<number> {
      const teacher = await teacherOf(job);
      const given = job.target.generators.map((g, i) =>
        g.type === "file" && typeof g.path === "string"
          ? {
              ...g,
              path: resolveInside(job.root, g.path, {
                source: "input.yml (staged)",
                what: `TARGET.generators[${i}].path`,
                allowHint: "forge run --allow-outside",
                ...(job.allowOutside ? { allowOutside: true } : {}),
              }),
            }
          : g,
      ) as StimSpec[];
      const specs = given.length ? given : defaultStimuli(job.parentDir);
      const remote = await remoteOf(job, teacher.tokenizer);
      const stimuli = remote
        ? await remoteStimuli(specs, remote, teacher.prompt, {
            seed: job.target.rollout.seed ?? 1,
            onProgress: (done, total) => progress(done, total),
          })
        : await generateStimuli(specs, {
            seed: job.target.rollout.seed ?? 1,
            teacher,
            onProgress: (done, total) => progress(done, total),
          });
      await writeFileAtomic(job.stimFile, toJsonl(stimuli));
      return stimuli.length;
    },

    async rollout(job: RepositoryJob, progress: Progress): Promise<number> {
      const teacher = await teacherOf(job);
      const stimuli = await readStimuli(job.stimFile);
      const remote = await remoteOf(job, teacher.tokenizer);
      if (remote) {
        const settings = resolveRollout(job.target.rollout);
        const k = settings.cacheTopK || Math.min(MAX_REMOTE_TOPK, teacher.model.config.vocabSize);
        if (k > MAX_REMOTE_TOPK)
          throw new BakingError(
            "E_INPUT",
            `TARGET.rollout.cacheTopK ${k}: a remote teacher returns at most ${MAX_REMOTE_TOPK} log-probabilities per position`,
          );
        // appended as trajectories arrive: a rerun after a dropped connection asks for the rest
        const partial = `${job.rolloutFile}.partial`;
        const trajectories = await remoteRollout(
          remote,
          teacher.prompt,
          stimuli,
          { ...settings, cacheTopK: k },
          { file: partial, k, onProgress: (d, t) => progress(d, t) },
        );
        await finishPartialRollout(partial, job.rolloutFile, trajectories);
        return trajectories.length;
      }
      const trajectories = rollout(teacher, stimuli, resolveRollout(job.target.rollout), (d, t) =>
        progress(d, t),
      );
      await writeFileAtomic(job.rolloutFile, toJsonl(trajectories));
      return trajectories.length;
    },

    async bake(job: RepositoryBakeJob, progress: Progress) {
      const { model, tokenizer } = await load(job.parentDir);
      loaded = undefined; // the bake changes the model: the next phase reloads
      try {
        const stimuli = await readStimuli(job.stimFile);
        const trajectories = await readTrajectories(job.rolloutFile, model.config.vocabSize);
        const settings = repositoryBakeSettings(job.bake);
        // a remote teacher's rollout carries its top-K: the default loss is over it
        if (job.teacher && settings.loss === undefined) settings.loss = "topk";
        const recorder = await options.recorder?.(job, settings);
        const losses: number[] = [];
        try {
          const result = await bakePrompt(model, tokenizer, {
            prompt: job.prompt as BakePrompt,
            stim: [],
            stimuli,
            trajectories,
            rollout: job.target.rollout,
            bake: settings,
            measure: { n: 32 },
            ...(job.teacher ? { remoteTeacher: job.teacher } : {}),
            ...(job.teacher && options.teacherApiKey
              ? { remoteApiKey: options.teacherApiKey }
              : {}),
            out: path.join(job.outDir, "bake"),
            baseModel: job.parentDir,
            merged: true,
            onEvent: (event) => {
              recorder?.event(event);
              if (event.type === "train" && event.event.type === "step-end") {
                losses.push(event.event.loss);
                progress(event.event.step, undefined, `KL ${event.event.loss.toFixed(4)}`);
              }
            },
          });
          const manifest = await recorder?.succeed(result);
          const metrics = result.record.metrics as Record<string, unknown>;
          return {
            modelDir: path.join(result.out, "merged"),
            steps: result.training.result.step,
            losses,
            metrics: { klBefore: metrics.klBefore, klAfter: metrics.klAfter },
            ...(manifest ? { manifest } : {}),
          };
        } catch (error) {
          await recorder?.fail(error);
          throw error;
        }
      } finally {
        model.dispose();
      }
    },
  };
}

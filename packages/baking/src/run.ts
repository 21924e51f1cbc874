/**
 * A whole bake, end to end: stim → rollout → teacher distributions → (KL before) → bake →
 * (KL after) → files. `<out>` is claimed as forge's "bake" output (see @forge/core
 * `claimOutput`: a directory forge did not make is never replaced, a previous bake only with
 * `force`, one writer at a time). Work happens in `<out>.partial/` (stimuli, trajectories,
 * checkpoints); a stopped or killed bake resumes from there; on success it becomes `<out>/`:
 *
 *   adapter_model.safetensors + adapter_config.json   the baked adapter (best validation KL)
 *   forge.json        base model, prompt (hash and text), settings, before/after metrics
 *   stim.jsonl, rollout.jsonl
 *   snapshots/<pct>/  half-baked adapters, when snapshot fractions are asked for
 *   merged/           base + adapter folded together, when asked for
 *   (mode "full": config.json + model.safetensors instead of the adapter files)
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import {
  claimOutput,
  InterruptedError,
  type OutputClaim,
  readJsonFile,
  writeFileAtomic,
} from "@forge/core";
import {
  type GPT,
  type LoadedModel,
  loadAdapter,
  loadModel,
  saveAdapter,
  saveMergedModel,
  saveModel,
  type TrainEvent,
} from "@forge/model";
import { checkLoraFits, writeAdapterFiles, writeModelFiles } from "@forge/model/internal";
import type { Tokenizer } from "@forge/tokenizer";
import {
  type BakeSettings,
  type BakeTraining,
  type LossKind,
  prepareExamples,
  resolveBake,
  splitExamples,
  trainStudent,
  usesTopK,
} from "./bake.js";
import { BakingError } from "./errors.js";
import {
  DEFAULT_MEASURE,
  type KLMeasurement,
  type MeasureSettings,
  measureKL,
  sampleTrajectories,
} from "./measure.js";
import {
  type BakePrompt,
  promptHash,
  readStimuli,
  readTrajectories,
  type Stimulus,
  type Trajectory,
  toJsonl,
} from "./records.js";
import {
  connectTeacher,
  describeTeacher,
  finishPartialRollout,
  MAX_REMOTE_TOPK,
  measureRemoteKL,
  type RemoteTeacherSpec,
  remoteRollout,
  remoteStimuli,
} from "./remote.js";
import { checkPromptFits, type RolloutSettings, resolveRollout, rollout } from "./rollout.js";
import { defaultStimuli, generateStimuli, type StimSpec } from "./stim.js";

/** The remote rollout's file while it grows (resumable); rollout.jsonl once it is complete. */
const PARTIAL_ROLLOUT = "rollout.partial.jsonl";

export type BakePhase =
  | "stim"
  | "rollout"
  | "teacher"
  | "measure-before"
  | "bake"
  | "measure-after"
  | "save";

export type BakeEvent =
  | { type: "phase-start"; phase: BakePhase }
  | { type: "phase-end"; phase: BakePhase; seconds: number }
  | { type: "progress"; phase: BakePhase; done: number; total: number }
  | { type: "train"; event: TrainEvent };

export interface BakeRunOptions {
  prompt: BakePrompt;
  /** Stimulus generators (default: `defaultStimuli(baseModel)`). */
  stim?: StimSpec[];
  rollout?: Partial<RolloutSettings>;
  bake?: Partial<BakeSettings>;
  /** KL before and after, on fresh teacher samples; false to skip. */
  measure?: Partial<MeasureSettings> | false;
  out: string;
  /**
   * `out`, already claimed by the caller (to keep its own files, such as a run manifest, in
   * the same directory): the bake writes into `output.work` and leaves `commit()` and
   * `release()` to the caller. Without it the bake claims `out` itself and commits on success.
   */
  output?: OutputClaim;
  /** Replace a previous bake in `out`, or start over from a stopped one. */
  force?: boolean;
  /** Path of the base model directory (recorded in forge.json for lineage). */
  baseModel?: string;
  /** Also write base + adapter merged into `merged/`. */
  merged?: boolean;
  /** Continue a stopped bake from `<out>.partial`. */
  resume?: boolean;
  signal?: AbortSignal;
  onEvent?: (event: BakeEvent) => void;
  /**
   * Stimuli and trajectories made earlier (by separate stim and rollout steps): the bake
   * skips those phases and trains on these. Give both.
   */
  stimuli?: Stimulus[];
  trajectories?: Trajectory[];
  /**
   * A remote teacher: `self` stimuli, the rollout and the teacher's top-K come from this
   * OpenAI-compatible endpoint (the prompt sent as the system message); the bake trains on the
   * top-K + tail divergence (default loss "topk"). `model` stays the student.
   */
  remoteTeacher?: RemoteTeacherSpec;
  /** Sent as the endpoint's bearer token; never recorded. */
  remoteApiKey?: string;
  /** Told about each retried request to the remote teacher. */
  onRetry?: (info: { url: string; attempt: number; delayMs: number; reason: string }) => void;
}

export interface BakeRunResult {
  out: string;
  stimuli: Stimulus[];
  trajectories: Trajectory[];
  training: BakeTraining;
  before?: KLMeasurement;
  after?: KLMeasurement;
  /** The forge.json written. */
  record: Record<string, unknown>;
  phaseSeconds: Partial<Record<BakePhase, number>>;
}

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

function settingsHash(value: unknown): string {
  return createHash("sha256").update(JSON.stringify(value)).digest("hex").slice(0, 16);
}

/**
 * Bake `options.prompt` into `model` (which the bake modifies: an adapter is attached, or
 * with mode "full" its weights change). `model` must be the base: the teacher is it, prompted.
 */
export async function bakePrompt(
  model: GPT,
  tokenizer: Tokenizer,
  options: BakeRunOptions,
): Promise<BakeRunResult> {
  const remote = options.remoteTeacher;
  const rolloutSettings = resolveRollout(options.rollout ?? {});
  const bakeSettings = resolveBake({
    ...(remote && options.bake?.loss === undefined ? { loss: "topk" as const } : {}),
    ...options.bake,
  });
  if (remote) {
    if (!usesTopK(bakeSettings.loss as LossKind))
      throw new BakingError(
        "E_INPUT",
        `bake.loss ${JSON.stringify(bakeSettings.loss)} needs the teacher's full distributions; a remote teacher gives its top-K: use topk, topk-reverse-kl, topk-js or topk-jsd`,
      );
    const k = rolloutSettings.cacheTopK || Math.min(MAX_REMOTE_TOPK, model.config.vocabSize);
    if (k > MAX_REMOTE_TOPK)
      throw new BakingError(
        "E_INPUT",
        `rollout.cacheTopK ${k}: a remote teacher returns at most ${MAX_REMOTE_TOPK} log-probabilities per position (the OpenAI API's top_logprobs limit)`,
      );
    rolloutSettings.cacheTopK = k;
  }
  if (usesTopK(bakeSettings.loss as LossKind) && rolloutSettings.cacheTopK === 0) {
    throw new BakingError(
      "E_INPUT",
      `bake.loss ${JSON.stringify(bakeSettings.loss)} needs rollout.cacheTopK > 0 (the teacher top-K to train on)`,
    );
  }
  checkPromptFits(tokenizer, options.prompt, model.config.blockSize);
  if (bakeSettings.mode === "lora")
    checkLoraFits(model.config.nEmbd, bakeSettings.lora, "bake.lora");
  const emit = options.onEvent ?? (() => undefined);
  const claim =
    options.output ??
    (await claimOutput(options.out, {
      kind: "bake",
      resumable: true,
      ...(options.resume ? { resume: true } : {}),
      ...(options.force ? { force: true } : {}),
      inputs: [options.baseModel],
    }));
  const ownClaim = options.output === undefined;
  try {
    const result = await runBake(
      model,
      tokenizer,
      options,
      claim,
      emit,
      rolloutSettings,
      bakeSettings,
    );
    if (ownClaim) await claim.commit();
    return result;
  } catch (error) {
    // a stopped bake keeps its work to resume; so does a failure after the rollout was saved
    if (ownClaim)
      await claim.release({
        keepWork:
          InterruptedError.isInstance(error) ||
          existsSync(path.join(claim.work, "rollout.jsonl")) ||
          existsSync(path.join(claim.work, PARTIAL_ROLLOUT)),
      });
    throw error;
  }
}

async function runBake(
  model: GPT,
  tokenizer: Tokenizer,
  options: BakeRunOptions,
  claim: OutputClaim,
  emit: (event: BakeEvent) => void,
  rolloutSettings: RolloutSettings,
  bakeSettings: BakeSettings,
): Promise<BakeRunResult> {
  const work = claim.work;
  const phaseSeconds: BakeRunResult["phaseSeconds"] = {};
  const stopIfAsked = (where: string) => {
    if (options.signal?.aborted)
      throw new InterruptedError(
        `the bake stopped ${where}; what it made so far is in ${work}: resume with the same settings`,
      );
  };
  const timed = async <T>(phase: BakePhase, fn: () => T | Promise<T>): Promise<T> => {
    stopIfAsked(`before ${phase}`);
    emit({ type: "phase-start", phase });
    const started = performance.now();
    const value = await fn();
    phaseSeconds[phase] = (performance.now() - started) / 1000;
    emit({ type: "phase-end", phase, seconds: phaseSeconds[phase]! });
    return value;
  };

  const stim = options.stim ?? defaultStimuli(options.baseModel);
  // the teacher's model name, not its address: a resumed bake may reach it elsewhere
  const inputs = {
    prompt: options.prompt,
    stim,
    rollout: rolloutSettings,
    ...(options.remoteTeacher ? { teacherModel: options.remoteTeacher.model ?? null } : {}),
  };
  const stateFile = path.join(work, "state.json");
  let reuse = false;
  if (claim.resumed && existsSync(stateFile)) {
    const state = (await readJsonFile(stateFile)) as { inputs: string };
    if (state.inputs !== settingsHash(inputs)) {
      throw new BakingError(
        "E_INPUT",
        `${work} holds a bake of different prompt, stimuli or rollout settings; start over with --force instead of --resume`,
      );
    }
    reuse = existsSync(path.join(work, "rollout.jsonl"));
  }
  await writeFileAtomic(stateFile, json({ inputs: settingsHash(inputs) }));

  const teacher = { model, tokenizer, prompt: options.prompt };
  const remote = options.remoteTeacher
    ? await connectTeacher(options.remoteTeacher, tokenizer, {
        ...(options.remoteApiKey ? { apiKey: options.remoteApiKey } : {}),
        ...(options.onRetry ? { onRetry: options.onRetry } : {}),
      })
    : undefined;
  const partialRollout = path.join(work, PARTIAL_ROLLOUT);
  // a resumed remote bake keeps its stimuli: the endpoint may not write the same ones again
  const stimFile = path.join(work, "stim.jsonl");
  if ((options.stimuli === undefined) !== (options.trajectories === undefined))
    throw new BakingError("E_INPUT", "give both stimuli and trajectories, or neither");
  if (options.stimuli && options.trajectories) {
    const ids = new Set(options.stimuli.map((s) => s.id));
    const orphan = options.trajectories.find((t) => !ids.has(t.stimulusId));
    if (orphan)
      throw new BakingError(
        "E_INPUT",
        `trajectory ${orphan.id} answers stimulus ${orphan.stimulusId}, which is not among the stimuli given`,
      );
    await writeFileAtomic(path.join(work, "stim.jsonl"), toJsonl(options.stimuli));
    await writeFileAtomic(path.join(work, "rollout.jsonl"), toJsonl(options.trajectories));
    reuse = true;
  }
  const reuseStimuli = reuse || (remote !== undefined && claim.resumed && existsSync(stimFile));
  const stimuli = reuseStimuli
    ? await readStimuli(stimFile)
    : remote
      ? await timed("stim", () =>
          remoteStimuli(stim, remote, options.prompt, {
            seed: rolloutSettings.seed,
            onProgress: (done, total) => emit({ type: "progress", phase: "stim", done, total }),
          }),
        )
      : await timed("stim", () =>
          generateStimuli(stim, {
            seed: rolloutSettings.seed,
            teacher,
            reserve: rolloutSettings.maxNewTokens,
            temperature: rolloutSettings.temperature,
            onProgress: (done, total) => emit({ type: "progress", phase: "stim", done, total }),
          }),
        );
  if (!reuseStimuli) await writeFileAtomic(stimFile, toJsonl(stimuli));
  const trajectories = reuse
    ? await readTrajectories(path.join(work, "rollout.jsonl"), model.config.vocabSize)
    : remote
      ? await timed("rollout", () =>
          remoteRollout(remote, options.prompt, stimuli, rolloutSettings, {
            file: partialRollout,
            k: rolloutSettings.cacheTopK,
            ...(options.signal ? { signal: options.signal } : {}),
            onProgress: (done, total) => emit({ type: "progress", phase: "rollout", done, total }),
          }),
        )
      : await timed("rollout", () =>
          rollout(teacher, stimuli, rolloutSettings, (done, total) =>
            emit({ type: "progress", phase: "rollout", done, total }),
          ),
        );
  if (remote) stopIfAsked("during the rollout");
  if (!reuse && remote)
    await finishPartialRollout(partialRollout, path.join(work, "rollout.jsonl"), trajectories);
  else if (!reuse) await writeFileAtomic(path.join(work, "rollout.jsonl"), toJsonl(trajectories));
  if (trajectories.length === 0)
    throw new BakingError("E_INPUT", "the teacher produced no trajectories");

  const examples = await timed("teacher", () =>
    prepareExamples(
      model,
      tokenizer,
      options.prompt,
      stimuli,
      trajectories,
      bakeSettings.loss,
      (done, total) => emit({ type: "progress", phase: "teacher", done, total }),
      { packTurns: bakeSettings.packTurns },
    ),
  );
  const measure = options.measure === false ? undefined : { ...options.measure };
  // One set of teacher samples serves both measurements (a paired comparison).
  const settingsOfMeasure = { ...DEFAULT_MEASURE, ...measure };
  // with a remote teacher: fresh samples from the endpoint (their own seed), KL over top-K
  const remoteSamples =
    measure && remote
      ? await timed("measure-before", async () => {
          const perStimulus = Math.ceil(settingsOfMeasure.n / stimuli.length);
          const sampled = await remoteRollout(
            remote,
            options.prompt,
            stimuli,
            {
              ...rolloutSettings,
              samples: perStimulus,
              temperature: 1,
              maxNewTokens: settingsOfMeasure.maxNewTokens,
              seed: settingsOfMeasure.seed,
            },
            { file: path.join(work, "measure.partial.jsonl"), k: rolloutSettings.cacheTopK },
          );
          return sampled.slice(0, settingsOfMeasure.n);
        })
      : undefined;
  const samples =
    measure && !remote
      ? sampleTrajectories({ model, prefix: options.prompt.teacher }, tokenizer, stimuli, {
          ...DEFAULT_MEASURE,
          ...measure,
        })
      : undefined;
  const before = remoteSamples
    ? measureRemoteKL({ model, prefix: options.prompt.student }, tokenizer, stimuli, remoteSamples)
    : measure
      ? await timed("measure-before", () =>
          measureKL(
            { model, prefix: options.prompt.teacher },
            { model, prefix: options.prompt.student },
            tokenizer,
            stimuli,
            measure,
            samples,
          ),
        )
      : undefined;

  const { train, validation } = splitExamples(
    examples,
    bakeSettings.validationFraction,
    bakeSettings.seed,
  );
  const snapshotsDir = path.join(work, "snapshots");
  const training = await timed("bake", () =>
    trainStudent(model, train, validation, bakeSettings, {
      checkpointDir: path.join(work, "checkpoints"),
      resume: claim.resumed,
      ...(options.signal ? { signal: options.signal } : {}),
      onEvent: (event) => emit({ type: "train", event }),
      onSnapshot: async (fraction) => {
        const target = path.join(snapshotsDir, `${Math.round(fraction * 100)}`);
        // a resumed bake may have taken this snapshot before it stopped: it is its own to replace
        if (bakeSettings.mode === "lora")
          await saveAdapter(model, target, {
            force: true,
            ...(options.baseModel ? { baseModel: options.baseModel } : {}),
          });
        else await saveModel(model, target, { tokenizer, force: true });
      },
    }),
  );
  if (training.result.reason === "aborted")
    throw new InterruptedError(
      `the bake stopped at step ${training.result.step}; its checkpoint, stimuli and trajectories are in ${work}: resume with the same settings`,
    );

  const after = remoteSamples
    ? await timed("measure-after", () =>
        measureRemoteKL(
          { model, prefix: options.prompt.student },
          tokenizer,
          stimuli,
          remoteSamples,
        ),
      )
    : measure
      ? await timed("measure-after", () =>
          measureAgainstBaked(model, tokenizer, options.prompt, stimuli, measure, samples!),
        )
      : undefined;

  const record: Record<string, unknown> = {
    kind: "bake",
    baseModel: options.baseModel ?? null,
    prompt: { hash: promptHash(options.prompt), ...options.prompt },
    stim,
    rollout: rolloutSettings,
    ...(remote
      ? {
          teacher: {
            ...describeTeacher(remote),
            // the endpoint gives no distribution at a stop: the sampled stop token is the target
            stopTarget: "sampled",
            measure: "top-K + tail KL on fresh endpoint samples",
          },
        }
      : {}),
    bake: bakeSettings,
    counts: {
      stimuli: stimuli.length,
      trajectories: trajectories.length,
      trainExamples: train.length,
      validationExamples: validation.length,
    },
    training: {
      steps: training.result.step,
      finalLoss: training.result.finalLoss,
      validationBefore: training.validationBefore ?? null,
      validationBest: training.validationBest ?? null,
      bestStep: training.result.bestStep ?? null,
      reason: training.result.reason,
    },
    metrics: {
      klBefore: before ? summarise(before) : null,
      klAfter: after ? summarise(after) : null,
    },
    createdAt: new Date().toISOString(),
  };
  await timed("save", async () => {
    if (bakeSettings.mode === "lora")
      await writeAdapterFiles(
        model,
        work,
        options.baseModel ? { baseModel: options.baseModel } : {},
      );
    else await writeModelFiles(model, work, { tokenizer });
    if (options.merged && bakeSettings.mode === "lora")
      await saveMergedModel(model, path.join(work, "merged"), {
        tokenizer,
        forge: record,
        force: true,
      });
    await writeFileAtomic(path.join(work, "forge.json"), json(record));
    // the trainer's checkpoints and the resume state are this bake's own
    await rm(path.join(work, "checkpoints"), { recursive: true, force: true });
    await rm(stateFile, { force: true });
    await rm(path.join(work, "measure.partial.jsonl"), { force: true });
  });
  return {
    out: claim.target,
    stimuli,
    trajectories,
    training,
    ...(before ? { before } : {}),
    ...(after ? { after } : {}),
    record,
    phaseSeconds,
  };
}

/**
 * KL(prompted base ‖ baked student) on the shared teacher samples. The teacher is the same
 * model with its adapter detached while its logits are computed.
 */
function measureAgainstBaked(
  model: GPT,
  tokenizer: Tokenizer,
  prompt: BakePrompt,
  stimuli: readonly Stimulus[],
  measure: Partial<MeasureSettings>,
  samples: { stimulus: Stimulus; response: number[] }[],
): KLMeasurement {
  const adapter = model.lora;
  if (!adapter) {
    throw new BakingError(
      "E_INPUT",
      "measuring after a full fine-tune needs the base model as teacher; use measureKL with two models",
    );
  }
  // A view of the model without the adapter: same parameters, lora undefined.
  const base = Object.create(model) as GPT;
  Object.defineProperty(base, "lora", { value: undefined, writable: true });
  return measureKL(
    { model: base, prefix: prompt.teacher },
    { model, prefix: prompt.student },
    tokenizer,
    stimuli,
    measure,
    samples,
  );
}

export function summarise(m: KLMeasurement): Record<string, number> {
  return {
    sequence: m.sequence.estimate,
    sequenceStandardError: m.sequence.standardError,
    token: m.token.estimate,
    tokenStandardError: m.token.standardError,
    n: m.n,
    meanTokens: m.meanTokens,
  };
}

/** A baked output directory as a ready model: its base (from forge.json) with the adapter attached. */
export async function loadBaked(
  dir: string,
  options: { baseModel?: string } = {},
): Promise<LoadedModel & { record: Record<string, unknown> }> {
  const recordFile = path.join(dir, "forge.json");
  if (!existsSync(recordFile))
    throw new BakingError("E_INPUT", `${dir} is not a bake output: forge.json is missing`);
  const record = JSON.parse(await readFile(recordFile, "utf8")) as Record<string, unknown>;
  if (existsSync(path.join(dir, "model.safetensors"))) return { ...(await loadModel(dir)), record };
  const base = options.baseModel ?? (record.baseModel as string | null);
  if (!base) throw new BakingError("E_INPUT", `${recordFile} names no base model; pass baseModel`);
  const loaded = await loadModel(base);
  await loadAdapter(loaded.model, dir);
  return { ...loaded, record };
}

/**
 * Models from the Hugging Face hub: list a repository's files through the hub API, download
 * the ones a model needs into a local cache laid out like the hub's own
 * (`models--org--name/{blobs,snapshots,refs}`), so Python's `huggingface_hub` and forge share
 * it. Downloads resume (HTTP Range into `blobs/<hash>.incomplete`), sizes and hashes are
 * checked before anything appears in a snapshot, and transient failures are retried.
 *
 * `HF_ENDPOINT` (default https://huggingface.co), `HF_TOKEN` (sent as a Bearer token),
 * `HF_HOME` / `HF_HUB_CACHE` (where the cache lives) and `HF_HUB_OFFLINE` are honoured.
 * No TensorFlow here: this module moves files.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import {
  copyFile,
  mkdir,
  open,
  readlink,
  rename,
  stat,
  statfs,
  symlink,
  unlink,
  writeFile,
} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { acquireLockWaiting, ForgeError, ioError, parseJson, writeFileAtomic } from "@forge/core";
import { ModelError } from "./errors.js";

/** The files a model needs, as `include` globs: weights, configuration, tokenizer, adapter. */
export const HUB_MODEL_FILES: readonly string[] = [
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "added_tokens.json",
  "chat_template.jinja",
  "vocab.json",
  "merges.txt",
  "*.safetensors",
  "model.safetensors.index.json",
  "adapter_config.json",
];

/** The hub forge talks to when `HF_ENDPOINT` is not set. */
export const DEFAULT_HUB_ENDPOINT = "https://huggingface.co";

/** Where the hub and the cache are. */
export interface HubOptions {
  /** The hub's address (default: `HF_ENDPOINT`, else https://huggingface.co). */
  endpoint?: string;
  /** An access token for private and gated repositories (default: `HF_TOKEN`). */
  token?: string;
  /** The cache root (default: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`). */
  cacheDir?: string;
  /** Environment to read the defaults from (default: `process.env`). */
  env?: NodeJS.ProcessEnv;
}

/** What to pull, and how patiently. */
export interface PullOptions extends HubOptions {
  /** A branch, tag or commit (default `main`). */
  revision?: string;
  /** Globs of the files to download (`*` within a path segment, `**` across); default HUB_MODEL_FILES. */
  include?: readonly string[];
  /** Attempts per request after the first, for 5xx, 429, timeouts and cut connections (default 5). */
  retries?: number;
  /** The first retry's delay; each next one doubles, up to 8 s (default 500 ms). */
  retryDelayMs?: number;
  /** How long a response (or the next chunk of one) may take before the attempt is abandoned (default 30 s). */
  timeoutMs?: number;
  /** Progress: a file starts, bytes arrive, a file is done. */
  onProgress?: (event: PullEvent) => void;
  /**
   * How long to wait (ms) while another process pulls the same model into the same cache
   * before failing with E_LOCKED; 0 fails at once (default 1 h). Waiting is reported as a
   * `waiting` event.
   */
  lockTimeoutMs?: number;
}

/** Progress of a pull, in order: listed, then per file start, bytes…, done (retries between). */
export type PullEvent =
  /** Another process is pulling the same model into this cache: this pull waits for it. */
  | { type: "waiting"; pid: number; command: string; since: string }
  | { type: "listed"; files: HubFile[]; bytes: number; cachedBytes: number }
  | { type: "file-start"; path: string; size: number | undefined; resumeFrom: number }
  | { type: "bytes"; path: string; bytes: number }
  /** Bytes counted before (a partial download) that are thrown away: the file starts over. */
  | { type: "discarded"; path: string; bytes: number }
  | { type: "retry"; path: string; attempt: number; reason: string; delayMs: number }
  | { type: "file-done"; path: string; size: number; cached: boolean };

/** A file of a repository, as the hub lists it. */
export interface HubFile {
  path: string;
  size?: number;
  /** The git blob id (sha1 of "blob <size>\0" + content) for files kept in git. */
  blobId?: string;
  /** The content's sha256, for files kept in LFS. */
  sha256?: string;
}

/** A file of the snapshot a pull returns. */
export interface PulledFile {
  path: string;
  size: number;
  /** The file inside the snapshot (a link to its blob, or a copy). */
  file: string;
  /** True when it was already in the cache and nothing was downloaded. */
  cached: boolean;
}

/** What a pull did: the snapshot directory, its files, the bytes it downloaded. */
export interface PullResult {
  repo: string;
  revision: string;
  /** The commit the revision pointed at. */
  commit: string;
  /** The snapshot directory: a model directory forge (and transformers) can load. */
  dir: string;
  files: PulledFile[];
  /** Bytes received over the network (resumed files count only the new part). */
  downloadedBytes: number;
  /** Size of every selected file. */
  totalBytes: number;
}

/** The cache root the hub's tools use. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  const home =
    env.HF_HOME ||
    path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "huggingface");
  return path.join(home, "hub");
}

const NAME = /^(?!\.)(?!.*\.\.)(?!.*--)[A-Za-z0-9_.-]{1,96}$/;

/** True for a hub model id `org/name` (also `org/name@revision`); false for paths like `./a/b`. */
export function isHubRepoId(text: string): boolean {
  const at = text.indexOf("@");
  const id = at >= 0 ? text.slice(0, at) : text;
  const parts = id.split("/");
  return (
    parts.length === 2 &&
    parts.every((part) => NAME.test(part) && !part.endsWith(".")) &&
    (at < 0 || text.length > at + 1)
  );
}

/** `org/name@revision` → its parts (revision undefined when not given). */
export function parseHubRepoId(text: string): { repo: string; revision: string | undefined } {
  if (!isHubRepoId(text))
    throw new ModelError(
      "E_INPUT",
      `${JSON.stringify(text)} is not a hub model id: expected org/name (letters, digits, ., _, -), optionally @revision`,
    );
  const at = text.indexOf("@");
  return at >= 0
    ? { repo: text.slice(0, at), revision: text.slice(at + 1) }
    : { repo: text, revision: undefined };
}

/** The cache folder of a model repository: `models--org--name`. */
export function hubRepoDir(repo: string, options: HubOptions = {}): string {
  const root = options.cacheDir ?? hubCacheDir(options.env);
  return path.join(root, `models--${repo.split("/").join("--")}`);
}

const COMMIT = /^[0-9a-f]{40}$/;

/**
 * The snapshot of `repo` at `revision` already in the cache, with no network: a directory with
 * its `config.json` (forge writes config.json last, so a pull cut short is not mistaken for a
 * complete one), or undefined.
 */
export function cachedSnapshot(
  repo: string,
  revision = "main",
  options: HubOptions = {},
): string | undefined {
  const dir = hubRepoDir(repo, options);
  let commit = COMMIT.test(revision) ? revision : undefined;
  if (commit === undefined) {
    const ref = path.join(dir, "refs", ...revision.split("/"));
    if (!existsSync(ref)) return undefined;
    commit = readFileSync(ref, "utf8").trim();
    if (!COMMIT.test(commit)) return undefined;
  }
  const snapshot = path.join(dir, "snapshots", commit);
  return existsSync(path.join(snapshot, "config.json")) ? snapshot : undefined;
}

/** A glob (`*` and `?` within a segment, `**` across segments) as a regular expression. */
export function globToRegExp(glob: string): RegExp {
  let source = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*" && glob[i + 1] === "*") {
      const slash = glob[i + 2] === "/";
      source += slash ? "(?:.*/)?" : ".*";
      i += slash ? 2 : 1;
    } else if (c === "*") source += "[^/]*";
    else if (c === "?") source += "[^/]";
    else source += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${source}$`);
}

/** A path from the hub that stays inside the snapshot (no absolute paths, no `..`). */
function safeRelativePath(file: string, repo: string): string {
  const parts = file.split("/");
  if (
    file === "" ||
    file.startsWith("/") ||
    file.includes("\\") ||
    file.includes("\0") ||
    parts.some((p) => p === "" || p === "." || p === "..")
  )
    throw new ModelError(
      "E_INPUT",
      `the hub listed ${JSON.stringify(file)} in ${repo}: not a safe file path`,
    );
  return file;
}

interface Context {
  repo: string;
  endpoint: string;
  token: string | undefined;
  retries: number;
  retryDelayMs: number;
  timeoutMs: number;
  onProgress: (event: PullEvent) => void;
}

class Retryable extends Error {}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function describeNetworkError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code) return `${cause.code}${cause.message ? `: ${cause.message}` : ""}`;
  return error instanceof Error ? error.message : String(error);
}

/** An HTTP status from the hub as a clear error, or a retryable one. */
function statusError(ctx: Context, response: Response, what: string, revision: string): Error {
  const status = response.status;
  const code = response.headers.get("x-error-code") ?? "";
  const where = `${ctx.endpoint}/${ctx.repo}`;
  if (status >= 500 || status === 429 || status === 408)
    return new Retryable(`the hub answered ${status} for ${what}`);
  if (status === 401 && code === "GatedRepo")
    return new ModelError(
      "E_INPUT",
      `${ctx.repo} is a gated model (401): accept its terms at ${where} and set HF_TOKEN to a token of that account`,
    );
  if (status === 401)
    return new ModelError(
      "E_INPUT",
      ctx.token
        ? `${ctx.repo}: no such model repository at ${ctx.endpoint}, or HF_TOKEN is invalid or has no access to it (401)`
        : `${ctx.repo}: no such model repository at ${ctx.endpoint}, or it is private or gated (401): if it exists, set HF_TOKEN to a token with access`,
    );
  if (status === 403)
    return new ModelError(
      "E_INPUT",
      code === "GatedRepo" || !ctx.token
        ? `${ctx.repo} is a gated model (403): accept its terms at ${where} and set HF_TOKEN to a token of that account`
        : `${ctx.repo}: access refused (403) for this HF_TOKEN: accept the model's terms at ${where} or use a token with read access`,
    );
  if (status === 404) {
    if (code === "RevisionNotFound")
      return new ModelError(
        "E_INPUT",
        `${ctx.repo} has no revision ${JSON.stringify(revision)} (404 at ${ctx.endpoint})`,
      );
    if (code === "EntryNotFound")
      return new ModelError("E_INPUT", `${ctx.repo}@${revision} has no file ${what} (404)`);
    return new ModelError(
      "E_INPUT",
      `no model repository ${ctx.repo} (or no revision ${JSON.stringify(revision)}) at ${ctx.endpoint} (404)`,
    );
  }
  return new ModelError("E_INPUT", `the hub answered ${status} ${response.statusText} for ${what}`);
}

/**
 * One GET with a timeout on the response's arrival; redirects are followed by hand so the
 * token goes only to the hub's own origin (a CDN gets the signed URL alone).
 */
async function request(
  ctx: Context,
  url: string,
  headers: Record<string, string>,
  controller: AbortController,
): Promise<Response> {
  let current = url;
  for (let hop = 0; hop < 10; hop++) {
    const sameOrigin = new URL(current).origin === new URL(ctx.endpoint).origin;
    const sent: Record<string, string> = { "user-agent": "forge", ...headers };
    if (ctx.token && sameOrigin) sent.authorization = `Bearer ${ctx.token}`;
    const timer = setTimeout(
      () => controller.abort(new Retryable("no response in time")),
      ctx.timeoutMs,
    );
    let response: Response;
    try {
      response = await fetch(current, {
        headers: sent,
        redirect: "manual",
        signal: controller.signal,
      });
    } catch (error) {
      if (controller.signal.reason instanceof Retryable) throw controller.signal.reason;
      const reason = `cannot reach ${new URL(current).origin}: ${describeNetworkError(error)}`;
      // a name that does not resolve will not resolve a second later: no network, or a typo
      if ((error as { cause?: { code?: string } }).cause?.code === "ENOTFOUND")
        throw new ModelError(
          "E_IO",
          `${ctx.repo}: ${reason}; offline? HF_HUB_OFFLINE=1 answers from the cache only, HF_ENDPOINT names another hub`,
          { cause: error, category: "io" },
        );
      throw new Retryable(reason);
    } finally {
      clearTimeout(timer);
    }
    if (response.status >= 300 && response.status < 400 && response.headers.has("location")) {
      await response.body?.cancel().catch(() => undefined);
      current = new URL(response.headers.get("location")!, current).toString();
      continue;
    }
    return response;
  }
  throw new ModelError("E_INPUT", `too many redirects from ${url}`);
}

/** Run `attempt` with retries and exponential backoff on Retryable failures. */
async function withRetries<T>(ctx: Context, what: string, attempt: () => Promise<T>): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt();
    } catch (error) {
      if (!(error instanceof Retryable)) throw error;
      if (n >= ctx.retries)
        throw new ModelError(
          "E_IO",
          `${ctx.repo}: ${what} failed after ${n + 1} attempt${n === 0 ? "" : "s"}: ${error.message}; run forge pull again to resume`,
          { cause: error, category: "io" },
        );
      const delayMs = Math.min(8000, ctx.retryDelayMs * 2 ** n);
      ctx.onProgress({ type: "retry", path: what, attempt: n + 1, reason: error.message, delayMs });
      await sleep(delayMs);
    }
  }
}

interface Listing {
  commit: string;
  files: HubFile[];
}

async function listRepository(ctx: Context, revision: string): Promise<Listing> {
  const url = `${ctx.endpoint}/api/models/${ctx.repo}/revision/${encodeURIComponent(revision)}?blobs=true`;
  return withRetries(ctx, "listing the repository", async () => {
    const response = await request(ctx, url, { accept: "application/json" }, new AbortController());
    if (!response.ok) {
      await response.body?.cancel().catch(() => undefined);
      throw statusError(ctx, response, "the repository listing", revision);
    }
    let body: unknown;
    try {
      body = await response.json();
    } catch (error) {
      throw new Retryable(`the listing was not JSON: ${describeNetworkError(error)}`);
    }
    const info = body as { sha?: unknown; siblings?: unknown };
    if (typeof info.sha !== "string" || !COMMIT.test(info.sha) || !Array.isArray(info.siblings))
      throw new ModelError(
        "E_INPUT",
        `${url}: the hub's answer has no commit "sha" and "siblings" list; is ${ctx.endpoint} a Hugging Face hub?`,
      );
    const files: HubFile[] = [];
    for (const sibling of info.siblings as Array<Record<string, unknown>>) {
      if (typeof sibling?.rfilename !== "string") continue;
      const lfs = sibling.lfs as { sha256?: unknown; oid?: unknown; size?: unknown } | undefined;
      const sha256 =
        typeof lfs?.sha256 === "string"
          ? lfs.sha256
          : typeof lfs?.oid === "string"
            ? lfs.oid
            : undefined;
      const size =
        typeof lfs?.size === "number"
          ? lfs.size
          : typeof sibling.size === "number"
            ? sibling.size
            : undefined;
      files.push({
        path: safeRelativePath(sibling.rfilename, ctx.repo),
        ...(size !== undefined ? { size } : {}),
        ...(typeof sibling.blobId === "string" ? { blobId: sibling.blobId } : {}),
        ...(sha256 !== undefined && /^[0-9a-f]{64}$/.test(sha256) ? { sha256 } : {}),
      });
    }
    return { commit: info.sha, files };
  });
}

/**
 * Sizes and hashes from the tree API (`/api/models/{repo}/tree/{commit}?recursive=true`, paged
 * through its Link headers), for a hub whose revision listing names the files only.
 */
async function completeFromTree(ctx: Context, commit: string, files: HubFile[]): Promise<void> {
  const known = new Map<string, HubFile>();
  let url: string | undefined =
    `${ctx.endpoint}/api/models/${ctx.repo}/tree/${commit}?recursive=true`;
  for (let page = 0; url !== undefined && page < 10_000; page++) {
    const current: string = url;
    url = await withRetries(ctx, "listing the repository's files", async () => {
      const response = await request(
        ctx,
        current,
        { accept: "application/json" },
        new AbortController(),
      );
      if (!response.ok) {
        await response.body?.cancel().catch(() => undefined);
        throw statusError(ctx, response, "the repository's file tree", commit);
      }
      let entries: unknown;
      try {
        entries = await response.json();
      } catch (error) {
        throw new Retryable(`the file tree was not JSON: ${describeNetworkError(error)}`);
      }
      if (!Array.isArray(entries))
        throw new ModelError("E_INPUT", `${current}: the hub's file tree is not a list`);
      for (const entry of entries as Array<Record<string, unknown>>) {
        if (entry?.type !== "file" || typeof entry.path !== "string") continue;
        const lfs = entry.lfs as { oid?: unknown; size?: unknown } | undefined;
        known.set(entry.path, {
          path: entry.path,
          ...(typeof entry.size === "number" ? { size: entry.size } : {}),
          ...(typeof entry.oid === "string" && /^[0-9a-f]{40}$/.test(entry.oid)
            ? { blobId: entry.oid }
            : {}),
          ...(typeof lfs?.oid === "string" && /^[0-9a-f]{64}$/.test(lfs.oid)
            ? { sha256: lfs.oid }
            : {}),
        });
      }
      const next = /<([^>]+)>;\s*rel="next"/.exec(response.headers.get("link") ?? "")?.[1];
      return next !== undefined ? new URL(next, current).toString() : undefined;
    });
  }
  for (const file of files) Object.assign(file, known.get(file.path));
}

/** sha256 (LFS) or git blob sha1 of a file, streamed. */
async function hashFile(file: string, kind: "sha256" | "git-sha1", size: number): Promise<string> {
  const hash = createHash(kind === "sha256" ? "sha256" : "sha1");
  if (kind === "git-sha1") hash.update(`blob ${size}\0`);
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

const stripEtag = (etag: string | null) => etag?.replace(/^W\//, "").replace(/"/g, "") ?? undefined;

/** Download one file into `blobs/<name>.incomplete`, resuming from what is there. */
async function downloadBlob(
  ctx: Context,
  commit: string,
  file: HubFile,
  incomplete: string,
): Promise<{ etag: string | undefined; received: number }> {
  const url = `${ctx.endpoint}/${ctx.repo}/resolve/${commit}/${file.path.split("/").map(encodeURIComponent).join("/")}`;
  let etag: string | undefined;
  let received = 0;
  let first = true;
  const discard = async (bytes: number) => {
    await writeFile(incomplete, new Uint8Array(0)).catch((error) => {
      throw ioError(error, incomplete);
    });
    if (!first && bytes > 0) ctx.onProgress({ type: "discarded", path: file.path, bytes });
  };
  await withRetries(ctx, file.path, async () => {
    let have = existsSync(incomplete) ? statSync(incomplete).size : 0;
    if (file.size !== undefined && have > file.size) {
      // longer than the file can be: not a prefix of it
      await discard(have);
      have = 0;
    }
    if (first) {
      ctx.onProgress({ type: "file-start", path: file.path, size: file.size, resumeFrom: have });
      first = false;
    }
    if (file.size !== undefined && have === file.size && have > 0) return;
    const controller = new AbortController();
    const headers: Record<string, string> = { "accept-encoding": "identity" };
    if (have > 0) headers.range = `bytes=${have}-`;
    const response = await request(ctx, url, headers, controller);
    if (response.status === 416) {
      // what we hold is not a prefix the server recognises: start again
      await response.body?.cancel().catch(() => undefined);
      await discard(have);
      throw new Retryable(`the server refused to resume ${file.path} at byte ${have}`);
    }
    if (!response.ok) {
      await response.body?.cancel().catch(() => undefined);
      throw statusError(ctx, response, file.path, commit);
    }
    etag =
      stripEtag(response.headers.get("x-linked-etag")) ??
      stripEtag(response.headers.get("etag")) ??
      etag;
    const rangeStart = Number(
      /^bytes (\d+)-/.exec(response.headers.get("content-range") ?? "")?.[1],
    );
    const append = have > 0 && response.status === 206 && rangeStart === have;
    if (response.status === 206 && !append) {
      // a partial answer that does not continue what we hold: start over
      await response.body?.cancel().catch(() => undefined);
      await discard(have);
      throw new Retryable(`the server answered ${file.path} from byte ${rangeStart}, not ${have}`);
    }
    if (!append && have > 0) await discard(have); // a whole file came instead of the rest
    const handle = await open(incomplete, append ? "a" : "w").catch((error) => {
      throw ioError(error, incomplete);
    });
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(
        () => controller.abort(new Retryable("the download stalled")),
        ctx.timeoutMs,
      );
    };
    try {
      if (!response.body) throw new Retryable(`no body for ${file.path}`);
      arm();
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        arm();
        await handle.write(chunk).catch((error) => {
          throw ioError(error, incomplete);
        });
        received += chunk.byteLength;
        ctx.onProgress({ type: "bytes", path: file.path, bytes: chunk.byteLength });
      }
    } catch (error) {
      if (ForgeError.isInstance(error) || error instanceof Retryable) throw error;
      if (controller.signal.reason instanceof Retryable) throw controller.signal.reason;
      throw new Retryable(`the connection broke (${describeNetworkError(error)})`);
    } finally {
      clearTimeout(timer);
      await handle.close().catch(() => undefined);
    }
    const now = statSync(incomplete).size;
    if (file.size !== undefined && now < file.size)
      throw new Retryable(`${file.path} ended at byte ${now} of ${file.size}`);
  });
  return { etag, received };
}

/** A snapshot entry pointing at its blob: a relative symlink, or a copy where links are refused. */
async function linkIntoSnapshot(blob: string, target: string): Promise<void> {
  await mkdir(path.dirname(target), { recursive: true });
  const relative = path.relative(path.dirname(target), blob);
  if (existsSync(target)) {
    const current = await readlink(target).catch(() => undefined);
    if (current === relative) return;
  }
  const temporary = path.join(
    path.dirname(target),
    `.${path.basename(target)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`,
  );
  try {
    await symlink(relative, temporary);
  } catch {
    await copyFile(blob, temporary);
  }
  try {
    await rename(temporary, target);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw ioError(error, target);
  }
}

/**
 * Download `repo` at `revision` into the cache (only what is missing) and return its snapshot
 * directory. A size or hash that does not match the hub's listing is an input error naming the
 * file, and the file never appears in the snapshot.
 */
export async function pullModel(repoId: string, options: PullOptions = {}): Promise<PullResult> {
  const env = options.env ?? process.env;
  const parsed = parseHubRepoId(repoId);
  const repo = parsed.repo;
  const revision = options.revision ?? parsed.revision ?? "main";
  const endpoint = (options.endpoint ?? (env.HF_ENDPOINT || DEFAULT_HUB_ENDPOINT)).replace(
    /\/+$/,
    "",
  );
  try {
    new URL(endpoint);
  } catch {
    throw new ModelError("E_INPUT", `HF_ENDPOINT ${JSON.stringify(endpoint)} is not a URL`);
  }
  const token = options.token ?? (env.HF_TOKEN || undefined);
  const cacheDir = options.cacheDir ?? hubCacheDir(env);
  const ctx: Context = {
    repo,
    endpoint,
    token,
    retries: options.retries ?? 5,
    retryDelayMs: options.retryDelayMs ?? 500,
    timeoutMs: options.timeoutMs ?? 30_000,
    onProgress: options.onProgress ?? (() => undefined),
  };
  if (env.HF_HUB_OFFLINE === "1" || env.HF_HUB_OFFLINE === "true") {
    const cached = cachedSnapshot(repo, revision, { cacheDir });
    if (cached) return offlineResult(repo, revision, cached);
    throw new ModelError(
      "E_INPUT",
      `${repo}@${revision} is not in the cache at ${cacheDir} and HF_HUB_OFFLINE is set: pull it while online`,
    );
  }

  const listing = await listRepository(ctx, revision);
  const include = options.include ?? HUB_MODEL_FILES;
  const patterns = include.map(globToRegExp);
  let selected = listing.files.filter((f) => patterns.some((p) => p.test(f.path)));
  if (options.include === undefined && !selected.some((f) => f.path.endsWith(".safetensors"))) {
    const names = listing.files
      .map((f) => f.path)
      .slice(0, 12)
      .join(", ");
    throw new ModelError(
      "E_INPUT",
      `${repo}@${revision} has no safetensors weights (files: ${names || "none"}); forge reads only *.safetensors`,
    );
  }
  if (selected.length === 0)
    throw new ModelError("E_INPUT", `no file of ${repo}@${revision} matches ${include.join(", ")}`);
  if (listing.files.some((f) => f.size === undefined || (f.sha256 ?? f.blobId) === undefined))
    await completeFromTree(ctx, listing.commit, listing.files);
  // config.json last: its presence marks a complete snapshot (cachedSnapshot)
  selected.sort((a, b) => Number(a.path === "config.json") - Number(b.path === "config.json"));

  const repoDir = hubRepoDir(repo, { cacheDir });
  const blobs = path.join(repoDir, "blobs");
  const snapshot = path.join(repoDir, "snapshots", listing.commit);
  try {
    await mkdir(blobs, { recursive: true });
    await mkdir(snapshot, { recursive: true });
  } catch (error) {
    throw ioError(error, repoDir);
  }
  const lock = await acquireLockWaiting(
    path.join(cacheDir, ".locks", path.basename(repoDir), "forge-pull.lock"),
    `forge pull ${repo}`,
    {
      what: `the cache of ${repo}`,
      ...(options.lockTimeoutMs !== undefined ? { timeoutMs: options.lockTimeoutMs } : {}),
      onWait: (holder) =>
        ctx.onProgress({
          type: "waiting",
          pid: holder.pid,
          command: holder.command,
          since: holder.startedAt,
        }),
    },
  );
  try {
    const files: PulledFile[] = [];
    let downloadedBytes = 0;
    const fetchOne = async (file: HubFile) => {
      const pulled = await fetchFile(ctx, listing.commit, file, blobs, snapshot);
      files.push(pulled.file);
      downloadedBytes += pulled.received;
      return pulled.file;
    };
    // a sharded checkpoint: its index first, then only the shards it names (a repository may
    // also ship the same weights in another layout, e.g. consolidated.safetensors)
    const index = selected.find((f) => f.path === "model.safetensors.index.json");
    const prefetched = options.include === undefined && index !== undefined;
    if (prefetched) {
      const shards = shardsOf((await fetchOne(index)).file, `${repo}/${index.path}`);
      selected = selected.filter(
        (f) =>
          f === index ||
          !f.path.endsWith(".safetensors") ||
          f.path.startsWith("adapter_") ||
          shards.has(f.path),
      );
      for (const f of listing.files)
        if (shards.has(f.path) && !selected.includes(f)) selected.splice(-1, 0, f);
      const missing = [...shards].filter((shard) => !listing.files.some((f) => f.path === shard));
      if (missing.length > 0)
        throw new ModelError(
          "E_INPUT",
          `${repo}@${revision}: model.safetensors.index.json names shards the repository does not have: ${missing.join(", ")}`,
        );
    }
    const cachedBytes = selected
      .filter(
        (f) => statSync(path.join(snapshot, f.path), { throwIfNoEntry: false })?.size === f.size,
      )
      .reduce((sum, f) => sum + (f.size ?? 0), 0);
    const totalBytes = selected.reduce((sum, f) => sum + (f.size ?? 0), 0);
    await checkFreeSpace(blobs, totalBytes - cachedBytes, repo);
    ctx.onProgress({ type: "listed", files: selected, bytes: totalBytes, cachedBytes });
    for (const file of selected) if (!(prefetched && file === index)) await fetchOne(file);
    if (revision !== listing.commit) {
      const ref = path.join(repoDir, "refs", ...revision.split("/"));
      const current = existsSync(ref) ? readFileSync(ref, "utf8").trim() : undefined;
      if (current !== listing.commit) await writeFileAtomic(ref, listing.commit);
    }
    return {
      repo,
      revision,
      commit: listing.commit,
      dir: snapshot,
      files,
      downloadedBytes,
      totalBytes,
    };
  } finally {
    lock.release();
  }
}

/** The shard files a `model.safetensors.index.json` names (its `weight_map` values). */
function shardsOf(file: string, source: string): Set<string> {
  const index = parseJson(readFileSync(file, "utf8"), source) as { weight_map?: unknown };
  const map = index?.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map))
    throw new ModelError("E_FORMAT", `${source}: no "weight_map" object of tensor → shard file`);
  const shards = new Set<string>();
  for (const shard of Object.values(map)) {
    if (typeof shard !== "string" || !shard.endsWith(".safetensors"))
      throw new ModelError(
        "E_FORMAT",
        `${source}: weight_map names ${JSON.stringify(shard)}, not a .safetensors file`,
      );
    shards.add(safeRelativePath(shard, source));
  }
  return shards;
}

/** Refuse before downloading when the disk cannot hold what is left to fetch. */
async function checkFreeSpace(dir: string, bytes: number, repo: string): Promise<void> {
  const fs = await statfs(dir).catch(() => undefined);
  if (!fs) return;
  const free = Number(fs.bavail) * Number(fs.bsize);
  if (bytes > free)
    throw new ModelError(
      "E_IO",
      `${repo} needs ${(bytes / 1e9).toFixed(2)} GB more in ${dir}, but only ${(free / 1e9).toFixed(2)} GB is free: free some space, or point HF_HOME elsewhere`,
      { category: "io" },
    );
}

/** One file into the snapshot: from the snapshot or a blob already there, else downloaded and checked. */
async function fetchFile(
  ctx: Context,
  commit: string,
  file: HubFile,
  blobs: string,
  snapshot: string,
): Promise<{ file: PulledFile; received: number }> {
  const target = path.join(snapshot, ...file.path.split("/"));
  const known = file.sha256 ?? file.blobId;
  const done = (size: number, cached: boolean, received: number) => {
    ctx.onProgress({ type: "file-done", path: file.path, size, cached });
    return { file: { path: file.path, size, file: target, cached }, received };
  };
  const present = statSync(target, { throwIfNoEntry: false });
  if (present?.isFile() && (file.size === undefined || present.size === file.size))
    return done(present.size, true, 0);
  const existing = known !== undefined ? path.join(blobs, known) : undefined;
  if (
    existing &&
    file.size !== undefined &&
    statSync(existing, { throwIfNoEntry: false })?.size === file.size
  ) {
    await linkIntoSnapshot(existing, target);
    return done(file.size, true, 0);
  }
  const name =
    known ?? `unverified-${createHash("sha256").update(`${commit}/${file.path}`).digest("hex")}`;
  const incomplete = path.join(blobs, `${name}.incomplete`);
  const { etag, received } = await downloadBlob(ctx, commit, file, incomplete);
  const blob = path.join(blobs, await verify(ctx, file, incomplete, etag));
  try {
    await rename(incomplete, blob);
  } catch (error) {
    throw ioError(error, blob);
  }
  await linkIntoSnapshot(blob, target);
  return done((await stat(blob)).size, false, received);
}

/**
 * Check a downloaded file against the listing: its size, then its sha256 (LFS) or git blob id
 * or etag. A mismatch removes the download and is an input error. Returns the blob's name.
 */
async function verify(
  ctx: Context,
  file: HubFile,
  incomplete: string,
  etag: string | undefined,
): Promise<string> {
  const size = statSync(incomplete).size;
  const fail = async (what: string) => {
    await unlink(incomplete).catch(() => undefined);
    return new ModelError(
      "E_INPUT",
      `${ctx.repo}: ${file.path} does not match the hub's listing: ${what}; nothing was kept — run forge pull again, and if it persists the repository or a proxy serves corrupt data`,
    );
  };
  if (file.size !== undefined && size !== file.size)
    throw await fail(`${size} bytes received, ${file.size} expected`);
  if (file.sha256 !== undefined) {
    const actual = await hashFile(incomplete, "sha256", size);
    if (actual !== file.sha256) throw await fail(`sha256 ${actual}, expected ${file.sha256}`);
    return file.sha256;
  }
  const gitId = file.blobId ?? (etag && /^[0-9a-f]{40}$/.test(etag) ? etag : undefined);
  if (gitId !== undefined) {
    const actual = await hashFile(incomplete, "git-sha1", size);
    if (actual !== gitId) throw await fail(`git blob id ${actual}, expected ${gitId}`);
    return gitId;
  }
  if (etag && /^[0-9a-f]{64}$/.test(etag)) {
    const actual = await hashFile(incomplete, "sha256", size);
    if (actual !== etag) throw await fail(`sha256 ${actual}, expected the etag ${etag}`);
    return etag;
  }
  // nothing to check against: name the blob by its content
  return hashFile(incomplete, "sha256", size);
}

function offlineResult(repo: string, revision: string, dir: string): PullResult {
  const files: PulledFile[] = [];
  const walk = (folder: string, prefix: string) => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const file = path.join(folder, entry.name);
      const name = prefix ? `${prefix}/${entry.name}` : entry.name;
      if (entry.name.startsWith(".")) continue;
      const info = statSync(file, { throwIfNoEntry: false });
      if (info?.isDirectory()) walk(file, name);
      else if (info?.isFile()) files.push({ path: name, size: info.size, file, cached: true });
    }
  };
  walk(dir, "");
  const totalBytes = files.reduce((sum, f) => sum + f.size, 0);
  return { repo, revision, commit: path.basename(dir), dir, files, downloadedBytes: 0, totalBytes };
}

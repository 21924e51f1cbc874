/**
 * A local stand-in for the Hugging Face hub (test support): serves model repositories on
 * 127.0.0.1 the way the hub does — `GET /api/models/{repo}/revision/{rev}` with `sha` and
 * `siblings` (sizes, git blob ids, LFS sha256), `/{repo}/resolve/{rev}/{path}` answering git
 * files directly with an ETag and LFS files with a 302 to a CDN path carrying
 * `X-Linked-Etag`/`X-Linked-Size`, HTTP Range on both, and the hub's 401/403/404 with
 * `X-Error-Code`. Faults can be injected: cut a file's connection after N bytes, serve corrupt
 * bytes, fail with 5xx, require a token.
 */
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

/** A repository the server serves. */
export interface FixtureRepo {
  /** `org/name`. */
  id: string;
  /** Branches and tags → commit (40 hex); default `{ main: <a fixed commit> }`. */
  refs?: Record<string, string>;
  /** Files at that commit; `lfs: true` serves it through the LFS path (sha256, CDN redirect). */
  files: Array<{ path: string; content: Uint8Array | string; lfs?: boolean }>;
  /** List only file names at the revision endpoint (an older hub or a mirror): sizes and hashes come from the tree API. */
  bareSiblings?: boolean;
  /** A gated repository: the token that was granted access (401 without a token, 403 with another). */
  gated?: string;
}

/** What the server serves, and whether it wants a token. */
export interface HubServerOptions {
  repos: FixtureRepo[];
  /** When set, every request must carry `Authorization: Bearer <token>` (else 401). */
  token?: string;
}

/** A request the server received (for assertions: ranges, tokens, which URLs). */
export interface HubRequest {
  method: string;
  url: string;
  range: string | undefined;
  authorization: string | undefined;
}

/** A running stand-in hub: its address, its request log, fault switches. */
export interface HubServer {
  endpoint: string;
  /** Every request received, in order. */
  requests: HubRequest[];
  /** Cut the connection after `bytes` bytes of this file's body, the next `times` times (default 1). */
  cutAfter(path: string, bytes: number, times?: number): void;
  /** Send `bytes` bytes of this file's body, then nothing more (the connection stays open), the next `times` times. */
  stallAfter(path: string, bytes: number, times?: number): void;
  /**
   * Send `bytes` bytes of this file's body, then hold the rest until the returned function is
   * called (the next request only) — a download kept in flight while a test does something.
   */
  holdAfter(path: string, bytes: number): () => void;
  /** Answer Range requests for this file with the whole file (a server without Range support). */
  ignoreRange(path: string): void;
  /** Serve this file with one byte flipped (the listing keeps the true hash). */
  corrupt(path: string): void;
  /** Answer the next `times` requests for this file with `status` (a 5xx, say). */
  failWith(path: string, status: number, times?: number): void;
  close(): Promise<void>;
}

/** The commit `main` points at unless a repository says otherwise. */
export const FIXTURE_COMMIT = "0123456789abcdef0123456789abcdef01234567";

const bytesOf = (content: Uint8Array | string) =>
  typeof content === "string" ? Buffer.from(content, "utf8") : Buffer.from(content);

/** A git blob id: sha1 of `blob <size>\0` + content (the hub's id and etag for files kept in git). */
export const gitBlobId = (content: Uint8Array) =>
  createHash("sha1").update(`blob ${content.byteLength}\0`).update(content).digest("hex");

/** The sha256 of some bytes, hex (the hub's LFS oid). */
export const sha256Of = (content: Uint8Array) => createHash("sha256").update(content).digest("hex");

/** The git blob id of an LFS file's pointer (what git stores in its place). */
const pointerId = (content: Uint8Array) =>
  gitBlobId(
    Buffer.from(
      `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256Of(content)}\nsize ${content.byteLength}\n`,
    ),
  );

/** Start the server on an ephemeral port of 127.0.0.1. */
export async function startHubServer(options: HubServerOptions): Promise<HubServer> {
  const repos = new Map(
    options.repos.map((repo) => [
      repo.id,
      {
        ...repo,
        refs: repo.refs ?? { main: FIXTURE_COMMIT },
        files: repo.files.map((f) => ({ ...f, bytes: bytesOf(f.content) })),
      },
    ]),
  );
  const byHash = new Map<string, Buffer>();
  for (const repo of repos.values())
    for (const f of repo.files) if (f.lfs) byHash.set(sha256Of(f.bytes), f.bytes);
  const cuts = new Map<string, { bytes: number; times: number; stall?: boolean }>();
  const holds = new Map<string, { bytes: number; released: Promise<void> }>();
  const corrupted = new Set<string>();
  const rangeless = new Set<string>();
  const failures = new Map<string, { status: number; times: number }>();
  const requests: HubRequest[] = [];

  const fail = (res: http.ServerResponse, status: number, code?: string) => {
    res.writeHead(status, {
      "content-type": "application/json",
      ...(code ? { "x-error-code": code } : {}),
    });
    res.end(JSON.stringify({ error: code ?? http.STATUS_CODES[status] }));
  };

  /** Send `body` honouring a Range header; cut the socket when told to. */
  const sendBody = (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    key: string,
    original: Buffer,
    headers: Record<string, string>,
  ) => {
    let body = original;
    if (corrupted.has(key)) {
      body = Buffer.from(original);
      body[body.length >> 1] = (body[body.length >> 1] ?? 0) ^ 0xff;
    }
    let start = 0;
    let status = 200;
    const range = rangeless.has(key) ? null : /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    if (range) {
      start = Number(range[1]);
      if (start >= body.length) {
        res.writeHead(416, { "content-range": `bytes */${body.length}` });
        res.end();
        return;
      }
      status = 206;
      headers["content-range"] = `bytes ${start}-${body.length - 1}/${body.length}`;
    }
    const slice = body.subarray(start);
    res.writeHead(status, {
      "content-type": "application/octet-stream",
      "content-length": String(slice.length),
      "accept-ranges": "bytes",
      ...headers,
    });
    const hold = holds.get(key);
    if (hold) {
      holds.delete(key);
      const first = Math.min(hold.bytes, slice.length);
      res.write(slice.subarray(0, first));
      void hold.released.then(() => res.end(slice.subarray(first)));
      return;
    }
    const cut = cuts.get(key);
    if (cut && cut.times > 0) {
      cut.times--;
      res.write(slice.subarray(0, Math.min(cut.bytes, slice.length)), () => {
        if (!cut.stall) setTimeout(() => res.socket?.destroy(), 20);
      });
      return;
    }
    res.end(slice);
  };

  let cdnOrigin = "";
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    requests.push({
      method: req.method ?? "GET",
      url: url.pathname + url.search,
      range: req.headers.range,
      authorization: req.headers.authorization,
    });
    const auth = req.headers.authorization;
    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(url.pathname);
    if (cdn) {
      const bytes = byHash.get(cdn[1]!);
      if (!bytes) return fail(res, 404);
      // a CDN never sees the hub token
      if (auth) return fail(res, 400, "TokenSentToCdn");
      const key = [...repos.values()]
        .flatMap((r) => r.files)
        .find((f) => f.lfs && sha256Of(f.bytes) === cdn[1])!.path;
      return sendBody(req, res, key, bytes, { etag: `"${cdn[1]}"` });
    }
    if (options.token && auth !== `Bearer ${options.token}`) return fail(res, 401);
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    const tree = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(url.pathname);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const id = api?.[1] ?? tree?.[1] ?? resolve?.[1];
    const repo = id ? repos.get(id) : undefined;
    if (!repo) return fail(res, id ? 401 : 404, "RepoNotFound");
    if (repo.gated !== undefined && !auth) return fail(res, 401, "GatedRepo");
    if (repo.gated !== undefined && auth !== `Bearer ${repo.gated}`)
      return fail(res, 403, "GatedRepo");
    const revision = decodeURIComponent((api ?? tree ?? resolve)![2]!);
    const commit =
      repo.refs[revision] ?? (Object.values(repo.refs).includes(revision) ? revision : undefined);
    if (!commit) return fail(res, 404, "RevisionNotFound");
    if (tree) {
      // recursive listing, three entries a page, the next page in a Link header (as the hub pages)
      const entries: unknown[] = [];
      const dirs = new Set<string>();
      for (const f of repo.files) {
        const parts = f.path.split("/");
        for (let i = 1; i < parts.length; i++) {
          const dir = parts.slice(0, i).join("/");
          if (!dirs.has(dir))
            entries.push({ type: "directory", oid: "0".repeat(40), size: 0, path: dir });
          dirs.add(dir);
        }
        entries.push({
          type: "file",
          oid: f.lfs ? pointerId(f.bytes) : gitBlobId(f.bytes),
          size: f.bytes.length,
          path: f.path,
          ...(f.lfs
            ? { lfs: { oid: sha256Of(f.bytes), size: f.bytes.length, pointerSize: 130 } }
            : {}),
        });
      }
      const cursor = Number(url.searchParams.get("cursor") ?? 0);
      const next = cursor + 3;
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (next < entries.length)
        headers.link = `<http://${req.headers.host}${url.pathname}?recursive=true&cursor=${next}>; rel="next"`;
      res.writeHead(200, headers);
      res.end(JSON.stringify(entries.slice(cursor, next)));
      return;
    }
    if (api) {
      if (repo.bareSiblings) {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            id: repo.id,
            sha: commit,
            siblings: repo.files.map((f) => ({ rfilename: f.path })),
          }),
        );
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          id: repo.id,
          sha: commit,
          siblings: repo.files.map((f) => ({
            rfilename: f.path,
            size: f.bytes.length,
            blobId: f.lfs ? pointerId(f.bytes) : gitBlobId(f.bytes),
            ...(f.lfs
              ? { lfs: { sha256: sha256Of(f.bytes), size: f.bytes.length, pointerSize: 130 } }
              : {}),
          })),
        }),
      );
      return;
    }
    const filePath = decodeURIComponent(resolve![3]!);
    const file = repo.files.find((f) => f.path === filePath);
    if (!file) return fail(res, 404, "EntryNotFound");
    const failure = failures.get(filePath);
    if (failure && failure.times > 0) {
      failure.times--;
      return fail(res, failure.status);
    }
    if (file.lfs) {
      const sha = sha256Of(file.bytes);
      res.writeHead(302, {
        location: `${cdnOrigin}/cdn/${sha}`,
        "x-repo-commit": commit,
        "x-linked-etag": `"${sha}"`,
        "x-linked-size": String(file.bytes.length),
      });
      res.end();
      return;
    }
    sendBody(req, res, filePath, file.bytes, {
      etag: `"${gitBlobId(file.bytes)}"`,
      "x-repo-commit": commit,
    });
  };
  // the hub and its CDN: two origins, as on the real hub (the token must not follow the redirect)
  const server = http.createServer(handler);
  const cdn = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  await new Promise<void>((resolve) => cdn.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  cdnOrigin = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    cutAfter: (p, bytes, times = 1) => void cuts.set(p, { bytes, times }),
    stallAfter: (p, bytes, times = 1) => void cuts.set(p, { bytes, times, stall: true }),
    holdAfter: (p, bytes) => {
      let release = () => {};
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      holds.set(p, { bytes, released });
      return release;
    },
    corrupt: (p) => void corrupted.add(p),
    ignoreRange: (p) => void rangeless.add(p),
    failWith: (p, status, times = 1) => void failures.set(p, { status, times }),
    close: () =>
      Promise.all(
        [server, cdn].map(
          (s) =>
            new Promise<void>((resolve) => {
              s.closeAllConnections();
              s.close(() => resolve());
            }),
        ),
      ).then(() => undefined),
  };
}

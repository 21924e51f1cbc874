// A registry for one npm scope, in this process, serving the packed tarballs: npm is pointed
// at it for the scope only (`--@forge:registry=<url>`), so `npm i @forge/eval` or
// `npm i -g @forge/cli` resolve exactly as they would from the public registry — @forge/*
// from these tarballs (a name it does not hold is a 404, never a namesake from elsewhere),
// everything else from the configured registry.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import path from "node:path";

/**
 * @param {{ name: string, tarball: string, published: Record<string, unknown> }[]} packages
 * @returns {Promise<{ url: string, scope: string, requests: string[], close: () => Promise<void> }>}
 */
export async function startRegistry(packages) {
  const scopes = new Set(packages.map((pkg) => pkg.name.split("/")[0]));
  if (scopes.size !== 1) throw new Error(`one scope expected, got ${[...scopes].join(", ")}`);
  const scope = [...scopes][0];
  const byName = new Map();
  const tarballs = new Map();
  for (const pkg of packages) {
    const data = readFileSync(pkg.tarball);
    const file = path.basename(pkg.tarball);
    tarballs.set(file, data);
    byName.set(pkg.name, {
      manifest: pkg.published,
      file,
      shasum: createHash("sha1").update(data).digest("hex"),
      integrity: `sha512-${createHash("sha512").update(data).digest("base64")}`,
    });
  }
  const requests = [];
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://registry");
    const pathname = decodeURIComponent(url.pathname);
    requests.push(`${request.method} ${pathname}`);
    const send = (status, body, type = "application/json") => {
      response.writeHead(status, { "content-type": type });
      response.end(body);
    };
    const tarball = /^\/-\/tarballs\/([^/]+\.tgz)$/.exec(pathname);
    if (tarball && tarballs.has(tarball[1])) {
      send(200, tarballs.get(tarball[1]), "application/octet-stream");
      return;
    }
    const entry = byName.get(pathname.slice(1));
    if (!entry) {
      send(404, JSON.stringify({ error: `${pathname.slice(1)} is not in this registry` }));
      return;
    }
    const { manifest } = entry;
    const base = `http://${request.headers.host}`;
    const packument = {
      name: manifest.name,
      "dist-tags": { latest: manifest.version },
      versions: {
        [manifest.version]: {
          ...manifest,
          _id: `${manifest.name}@${manifest.version}`,
          dist: {
            tarball: `${base}/-/tarballs/${entry.file}`,
            shasum: entry.shasum,
            integrity: entry.integrity,
          },
        },
      },
    };
    send(200, JSON.stringify(packument));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/`,
    scope,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

// Packs every public package with `pnpm -r pack` — the same packer `pnpm publish` uses, so
// `workspace:^` ranges become the real versions and `publishConfig` applies — and maps each
// package to its tarball.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { publicPackages, root, runPnpm } from "./workspace.mjs";

/** The file name pnpm gives a package's tarball: @scope/name@1.2.3 -> scope-name-1.2.3.tgz. */
export function tarballName(manifest) {
  return `${manifest.name.replace(/^@/, "").replace("/", "-")}-${manifest.version}.tgz`;
}

/**
 * Packs every public package of the workspace at `directory` into `destination`.
 * Returns [{ name, dir, absolute, manifest, tarball }], one per public package.
 */
export function packAll(destination, directory = root) {
  mkdirSync(destination, { recursive: true });
  runPnpm(["-r", "--reporter=silent", "pack", "--pack-destination", destination], {
    cwd: directory,
  });
  return publicPackages(directory).map((pkg) => {
    const tarball = path.join(destination, tarballName(pkg.manifest));
    if (!existsSync(tarball)) throw new Error(`pnpm -r pack made no ${tarball} for ${pkg.name}`);
    return { ...pkg, tarball };
  });
}

/** The paths inside a tarball, without the leading `package/`. */
export function tarballFiles(tarball) {
  return execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" })
    .split("\n")
    .filter((line) => line.startsWith("package/") && !line.endsWith("/"))
    .map((line) => line.slice("package/".length));
}

/** The package.json inside a tarball, as published. */
export function tarballManifest(tarball) {
  return JSON.parse(
    execFileSync("tar", ["-xzOf", tarball, "package/package.json"], { encoding: "utf8" }),
  );
}

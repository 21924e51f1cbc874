#!/usr/bin/env node
// The API reference: typedoc over every public package's published entry points, into docs/api.
//
//   node tools/docs.mjs   (root script: `pnpm run docs`, which builds first; plain `pnpm docs` is
//   pnpm's own command that opens the homepage)
//
// Entry points come from each package's `exports` map (the `types` file of every subpath but
// `./internal`, which is plumbing and not a stable API), so a new package or subpath is
// documented without touching this script. The documented files are
// the built .d.ts that ship, so the reference is the API a user gets, and a type one package
// re-exports from another links to its page. Modules are named by their import specifier
// (`@forge/core/testing`). typedoc.json holds the rest: warnings are errors, and validation
// fails on a broken {@link}, a rewritten link, or a public signature that uses a type the
// package does not export.
import { existsSync } from "node:fs";
import path from "node:path";
import { Application, ReflectionKind } from "typedoc";
import { isMain, publicPackages, root, seconds } from "./lib/workspace.mjs";

/** Subpaths that are not public API (docs/architecture.md: plumbing, not a stable API). */
const UNDOCUMENTED_SUBPATHS = new Set(["./internal"]);

/** [absolute .d.ts path, import specifier] for every public subpath with types. */
export function documentedEntries(packages = publicPackages()) {
  const entries = [];
  for (const pkg of packages) {
    for (const [subpath, target] of Object.entries(pkg.manifest.exports ?? {})) {
      if (UNDOCUMENTED_SUBPATHS.has(subpath)) continue;
      if (!target || typeof target !== "object" || typeof target.types !== "string") continue;
      const file = path.join(pkg.absolute, target.types);
      const specifier = subpath === "." ? pkg.name : `${pkg.name}/${subpath.slice(2)}`;
      entries.push([file, specifier]);
    }
  }
  return entries;
}

/** "@forge/core 3/33, …": exported declarations without a doc comment, per module. */
function undocumentedSummary(project) {
  const kinds =
    ReflectionKind.Function |
    ReflectionKind.Class |
    ReflectionKind.Interface |
    ReflectionKind.Variable |
    ReflectionKind.TypeAlias |
    ReflectionKind.Enum;
  return project
    .getChildrenByKind(ReflectionKind.Module)
    .map((module) => {
      const declarations = (module.children ?? []).filter((child) => child.kindOf(kinds));
      const bare = declarations.filter(
        (child) =>
          !child.hasComment() && !child.signatures?.some((signature) => signature.hasComment()),
      );
      return `${module.name} ${bare.length}/${declarations.length}`;
    })
    .join(", ");
}

/**
 * Builds the reference for `packages` into `out` (default: typedoc.json's). Returns true when
 * typedoc reported no error and no warning; the output is written only then.
 */
export async function buildDocs({ packages = publicPackages(), out } = {}) {
  const started = Date.now();
  const entries = documentedEntries(packages);
  const missing = entries.filter(([file]) => !existsSync(file));
  if (missing.length > 0) {
    console.error(
      `docs: build first — missing ${missing.map(([file]) => path.relative(root, file)).join(", ")}`,
    );
    return false;
  }
  const app = await Application.bootstrapWithPlugins({
    options: path.join(root, "typedoc.json"),
    entryPoints: entries.map(([file]) => file),
    ...(out ? { out } : {}),
  });
  const project = await app.convert();
  if (!project) return false;
  const names = new Map(entries.map(([file, specifier]) => [path.resolve(file), specifier]));
  for (const module of project.getChildrenByKind(ReflectionKind.Module)) {
    const file = project.getSymbolIdFromReflection(module)?.fileName;
    const specifier = file && names.get(path.resolve(file));
    if (!specifier) {
      app.logger.error(`docs: module ${module.name} does not come from a package entry point`);
      continue;
    }
    module.name = specifier;
  }
  app.validate(project);
  console.log(`undocumented exports (reported, not enforced): ${undocumentedSummary(project)}`);
  if (app.logger.hasErrors() || app.logger.hasWarnings()) {
    console.error("docs: FAILED (errors or warnings above)");
    return false;
  }
  await app.generateOutputs(project);
  if (app.logger.hasErrors() || app.logger.hasWarnings()) return false;
  const packageCount = new Set(
    packages.filter((pkg) =>
      entries.some(([file]) => file.startsWith(`${pkg.absolute}${path.sep}`)),
    ),
  ).size;
  console.log(
    `docs: ${entries.length} entry points of ${packageCount} packages -> ${path.relative(root, app.options.getValue("out"))} (${seconds(Date.now() - started)})`,
  );
  return true;
}

if (isMain(import.meta.url)) process.exitCode = (await buildDocs()) ? 0 : 1;

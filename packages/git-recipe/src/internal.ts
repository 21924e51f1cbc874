/**
 * `@forge/git-recipe/internal`: the plumbing under the public API, for forge's own packages,
 * tools and tests. Nothing here is needed to use a bake repository — `BakeRepo` does each of
 * these for you — and nothing here has a stability promise: names and signatures may change in
 * any release.
 */

/** The keep-theirs merge driver's name, as it appears in git config and `.gitattributes`. */
export { MERGE_DRIVER } from "./git.js";

/** input.yml's pieces: the name rule, the cleared input a bake leaves, section hashes and the stable JSON they hash. */
export { checkName, clearedInput, NAME_PATTERN, sectionHashes, stableJson } from "./input.js";

/** The generated files' text: recipe.yml and .forge formatted and parsed (bounded YAML). */
export { formatRecipe, formatState, parseRecipe, parseState } from "./recipe.js";

/** A bake's per-step losses as the summary recipe.yml records. */
export { summariseLosses } from "./runner.js";

/** Pieces of the history scraper: commit trailers and the documented complexity score. */
export { complexityScore, parseTrailers } from "./scrape.js";

/** The model store's content hash of a directory. */
export { digestDirectory } from "./store.js";

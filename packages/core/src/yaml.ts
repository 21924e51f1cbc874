/**
 * YAML from files forge did not write (input.yml, task files) is parsed within limits: a size
 * cap before parsing, and caps on aliases and nesting after, so an alias bomb or a file nested
 * thousands deep is an input error naming the file (exit 2) — not minutes of work, gigabytes
 * of memory, or a crash.
 */
import {
  type Document,
  isAlias,
  isCollection,
  isPair,
  Lexer,
  LineCounter,
  parseDocument,
} from "yaml";
import { ForgeError } from "./errors.js";

export interface YamlLimits {
  /** Largest text accepted, in bytes (default 4 MiB). */
  maxBytes?: number;
  /** Most alias references (`*name`) accepted (default 64). */
  maxAliases?: number;
  /** Deepest nesting of mappings and lists accepted (default 64). */
  maxDepth?: number;
}

export const DEFAULT_YAML_LIMITS: Required<YamlLimits> = {
  maxBytes: 4 * 1024 * 1024,
  maxAliases: 64,
  maxDepth: 64,
};

/** A problem in a file, at a path inside the document and, where known, a line and column. */
export interface LocatedProblem {
  path: string;
  message: string;
  line?: number;
  column?: number;
}

export interface ParsedYaml {
  doc: Document.Parsed;
  counter: LineCounter;
  /** The document as plain values (null for an empty document). */
  value: unknown;
  /** Line and column (1-based) of a node, when it has a position. */
  at(node: unknown): { line?: number; column?: number };
  /**
   * A problem at `keyPath` (e.g. ["scorer", "type"] → `scorer.type`), located at the deepest
   * node of the path the document has.
   */
  problem(keyPath: readonly (string | number)[], message: string): LocatedProblem;
}

/** `file:line:col: path: message` lines for problems, as one error (exit 2). */
export function locatedError(
  file: string,
  problems: readonly LocatedProblem[],
  code = "E_INPUT",
  heading?: string,
): ForgeError & { problems: LocatedProblem[] } {
  const lines = problems.map(
    (p) =>
      `${file}${p.line !== undefined ? `:${p.line}:${p.column ?? 1}` : ""}: ${p.path}: ${p.message}`,
  );
  const message = heading ? `${heading}\n  ${lines.join("\n  ")}` : lines.join("\n");
  return Object.assign(new ForgeError(code, message), { problems: [...problems] });
}

/** Deepest nesting of collections, counted without recursion. */
function depthOf(root: unknown, limit: number): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[root, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (!isCollection(node)) continue;
    deepest = Math.max(deepest, depth);
    if (deepest > limit) return deepest;
    for (const item of node.items) {
      if (isPair(item)) {
        stack.push([item.key, depth + 1], [item.value, depth + 1]);
      } else stack.push([item, depth + 1]);
    }
  }
  return deepest;
}

/**
 * Nesting too deep to hand to the YAML parser, found by its (iterative) lexer: flow
 * collections (`[[[[…`) nested beyond `limit`, more than `limit` block indicators on one line
 * (`- - - - …`), or indentation beyond `limit` levels. The parser recurses once per level:
 * thousands of levels overflow the stack, and tens of thousands of flow levels have been seen
 * to abort the process outright (V8 "RegExpCompiler Allocation failed" after the overflow),
 * so such a text is refused before it is parsed.
 */
function nestingProblem(text: string, limit: number): LocatedProblem | undefined {
  let flow = 0;
  let stray = 0;
  let indicators = 0;
  let line = 1;
  let lineStart = 0;
  let offset = 0;
  for (const token of new Lexer().lex(text)) {
    // The lexer's own markers (document, scalar, flow end) are not part of the text; a flow
    // end marker means a flow collection was cut off and block context resumed.
    if (token === "\x18") flow = 0;
    if (token.length === 1 && token < " " && token !== "\n" && token !== "\t") continue;
    const at = offset;
    offset += token.length;
    if (token === "[" || token === "{") flow++;
    else if (token === "]" || token === "}") {
      if (flow > 0) flow--;
      // A closing bracket with nothing open is an error the parser reports once per bracket,
      // at a cost that grows faster than their number: many of them are refused here.
      else if (++stray > limit)
        return {
          path: "(yaml)",
          message: `more than ${limit} closing brackets with no bracket open`,
          line,
          column: at - lineStart + 1,
        };
    }
    // "- " and "? " nest even inside a flow collection (the parser recovers into block
    // context); ":" counts only outside one, where a line of inline items has many.
    else if (token === "-" || token === "?" || (flow === 0 && token === ":")) indicators++;
    if (flow > limit || indicators > limit)
      return {
        path: "(yaml)",
        message: `nested more than ${limit} levels deep`,
        line,
        column: at - lineStart + 1,
      };
    // Indentation is the other way to nest: a line indented further than `limit` levels of a
    // generous 4 columns each is refused too.
    if (at === lineStart && flow === 0 && /^[ \t]+$/.test(token) && token.length > 4 * limit)
      return {
        path: "(yaml)",
        message: `indented ${token.length} columns; more than ${4 * limit} is refused (it nests deeper than ${limit} levels)`,
        line,
        column: 1,
      };
    const newlines = token.split("\n").length - 1;
    if (newlines > 0) {
      line += newlines;
      lineStart = at + token.lastIndexOf("\n") + 1;
      indicators = 0;
    }
  }
  return undefined;
}

/**
 * Parse YAML text from `file` within `limits`. Syntax errors, and texts over a limit, throw one
 * input error listing each problem as `file:line:col: path: message`.
 */
export function parseYaml(text: string, file: string, limits: YamlLimits = {}): ParsedYaml {
  const { maxBytes, maxAliases, maxDepth } = { ...DEFAULT_YAML_LIMITS, ...limits };
  const bytes = Buffer.byteLength(text);
  if (bytes > maxBytes)
    throw locatedError(file, [
      {
        path: "(file)",
        message: `${bytes} bytes is more than the ${maxBytes} accepted for this file`,
      },
    ]);
  const deep = nestingProblem(text, maxDepth);
  if (deep) throw locatedError(file, [deep]);
  const counter = new LineCounter();
  let doc: Document.Parsed;
  try {
    doc = parseDocument(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true });
  } catch (error) {
    // The parser recurses once per level of nesting: what the scan let through and still
    // overflows the stack is nesting too deep all the same.
    if (error instanceof RangeError)
      throw locatedError(file, [{ path: "(yaml)", message: "nested too deeply to be read" }]);
    throw error;
  }
  const at = (node: unknown) => {
    const range = (node as { range?: [number, number, number] } | undefined)?.range;
    if (!range) return {};
    const { line, col } = counter.linePos(range[0]);
    return { line, column: col };
  };
  if (doc.errors.length > 0)
    throw locatedError(
      file,
      doc.errors.map((error) => {
        const { line, col } = counter.linePos(error.pos[0]);
        return { path: "(yaml)", message: error.message.split("\n")[0]!, line, column: col };
      }),
    );
  let aliases = 0;
  let firstAlias: unknown;
  const stack: unknown[] = [doc.contents];
  while (stack.length > 0) {
    const node = stack.pop();
    if (isAlias(node)) {
      aliases++;
      firstAlias ??= node;
    } else if (isPair(node)) stack.push(node.key, node.value);
    else if (isCollection(node)) stack.push(...node.items);
  }
  if (aliases > maxAliases)
    throw locatedError(file, [
      {
        path: "(yaml)",
        message: `${aliases} aliases (*name) is more than the ${maxAliases} accepted`,
        ...at(firstAlias),
      },
    ]);
  const depth = depthOf(doc.contents, maxDepth);
  if (depth > maxDepth)
    throw locatedError(file, [
      { path: "(yaml)", message: `nested more than ${maxDepth} levels deep` },
    ]);
  let value: unknown;
  try {
    // Aliases expand here: cap the expansion as well as the count.
    value = doc.toJS({ maxAliasCount: Math.max(maxAliases, 1) * 8 });
  } catch (error) {
    throw locatedError(file, [
      { path: "(yaml)", message: `cannot be read: ${(error as Error).message}` },
    ]);
  }
  const problem = (keyPath: readonly (string | number)[], message: string): LocatedProblem => {
    let node: unknown;
    for (let cut = keyPath.length; !node && cut >= 0; cut--) {
      try {
        node = doc.getIn(keyPath.slice(0, cut), true);
      } catch {
        node = undefined;
      }
    }
    const { line, column } = at(node);
    const shown = keyPath
      .map((k) => (typeof k === "number" ? `[${k}]` : `.${k}`))
      .join("")
      .replace(/^\./, "");
    return {
      path: shown || "(root)",
      message,
      ...(line !== undefined ? { line, column: column ?? 1 } : {}),
    };
  };
  return { doc, counter, value: value ?? null, at, problem };
}

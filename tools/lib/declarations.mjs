// The runtime values an entry point's .d.ts declares, read with the TypeScript compiler, so they
// can be held against what the JavaScript really exports (a declared value the JS lacks passes
// `tsc` and throws in Node: "does not provide an export named …").
import ts from "typescript";

function isTypeOnlyExport(symbol) {
  return (symbol.declarations ?? []).some(
    (declaration) =>
      ts.isExportSpecifier(declaration) &&
      (declaration.isTypeOnly || declaration.parent.parent.isTypeOnly),
  );
}

/**
 * For each declaration file, the names it exports as values (functions, classes, constants,
 * enums, namespaces with values), sorted, and the names whose alias does not resolve. One
 * TypeScript program reads them all; modules resolve as Node resolves them (NodeNext).
 * @param {string[]} declarationFiles absolute paths
 * @returns {Map<string, { values: string[], unresolved: string[] }>}
 */
export function declaredValueExports(declarationFiles) {
  const program = ts.createProgram(declarationFiles, {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  });
  const checker = program.getTypeChecker();
  const result = new Map();
  for (const file of declarationFiles) {
    const source = program.getSourceFile(file);
    if (!source) throw new Error(`TypeScript could not read ${file}`);
    const moduleSymbol = checker.getSymbolAtLocation(source);
    const values = [];
    const unresolved = [];
    for (const symbol of moduleSymbol ? checker.getExportsOfModule(moduleSymbol) : []) {
      if (isTypeOnlyExport(symbol)) continue;
      const target =
        symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
      if (!target.declarations || target.declarations.length === 0) {
        unresolved.push(symbol.name);
        continue;
      }
      if (target.flags & ts.SymbolFlags.Value) values.push(symbol.name);
    }
    result.set(file, { values: values.sort(), unresolved: unresolved.sort() });
  }
  return result;
}

/**
 * The lineage tree: every branch's recipe.yml joined into one tree of bakes. A bake is the
 * same node on every branch that inherited it (same name, same model); a branch label marks
 * the last bake of each branch.
 */
import type { BakeRecord, Recipe } from "./recipe.js";

export interface TreeNode {
  bake: BakeRecord;
  branches: string[];
  children: TreeNode[];
}

export interface LineageTree {
  repository: string;
  baseModels: string[];
  roots: TreeNode[];
  branches: string[];
  /** Branches with no bakes yet. */
  bare: string[];
}

const identity = (b: BakeRecord) => `${b.name}\0${b.models.join(",")}`;

export function buildTree(recipes: readonly { branch: string; recipe: Recipe }[]): LineageTree {
  const nodes = new Map<string, TreeNode>();
  const roots: TreeNode[] = [];
  const bare: string[] = [];
  for (const { branch, recipe } of recipes) {
    let parent: TreeNode | undefined;
    for (const bake of recipe.bakes) {
      const key = identity(bake);
      let node = nodes.get(key);
      if (!node) {
        node = { bake, branches: [], children: [] };
        nodes.set(key, node);
        (parent ? parent.children : roots).push(node);
      }
      parent = node;
    }
    if (parent) parent.branches.push(branch);
    else bare.push(branch);
  }
  return {
    repository: recipes[0]?.recipe.repository ?? "",
    baseModels: [...new Set(recipes.map((r) => r.recipe.base_model ?? "(none)"))],
    roots,
    branches: recipes.map((r) => r.branch),
    bare,
  };
}

export interface TreeColors {
  bake(text: string): string;
  model(text: string): string;
  branch(text: string): string;
  header(text: string): string;
}

const plain: TreeColors = { bake: (t) => t, model: (t) => t, branch: (t) => t, header: (t) => t };

/** The tree as text: bakes, their models beneath, branch labels beside the branch tips. */
export function formatTree(tree: LineageTree, colors: TreeColors = plain): string {
  const lines = [
    colors.header(
      `Model tree for ${tree.repository} (${tree.branches.length} branch${tree.branches.length === 1 ? "" : "es"})`,
    ),
    `Base model: ${tree.baseModels.join(", ")}`,
  ];
  if (tree.bare.length) lines.push(colors.branch(`[${tree.bare.join("] [")}] (no bakes yet)`));
  const walk = (node: TreeNode, prefix: string, last: boolean) => {
    const labels = node.branches.length
      ? ` ${colors.branch(`[${node.branches.join("] [")}]`)}`
      : "";
    lines.push(`${prefix}${last ? "└── " : "├── "}${colors.bake(node.bake.name)}${labels}`);
    const inner = `${prefix}${last ? "    " : "│   "}`;
    for (const model of node.bake.models)
      lines.push(`${inner}${node.children.length ? "│ " : "  "}└─ ${colors.model(model)}`);
    for (const [i, child] of node.children.entries())
      walk(child, inner, i === node.children.length - 1);
  };
  for (const [i, root] of tree.roots.entries()) walk(root, "", i === tree.roots.length - 1);
  return lines.join("\n");
}

/**
 * Numbers in text, read one way everywhere: the `numeric` scorer reads a model's answer with
 * it, and GSM8K-format datasets read their final answer (after `####`) with it, so an answer
 * and its target are always parsed alike.
 */

/**
 * The first or last number in `text` (default the first): an optional minus sign, digits, an
 * optional decimal part. Thousands separators are removed first ("1,234" is 1234). Undefined
 * when the text holds no number.
 */
export function extractNumber(text: string, pick: "first" | "last" = "first"): number | undefined {
  const matches = text.replace(/,(?=\d{3}\b)/g, "").match(/-?\d+(?:\.\d+)?/g);
  if (!matches) return undefined;
  return Number(pick === "first" ? matches[0] : matches.at(-1));
}

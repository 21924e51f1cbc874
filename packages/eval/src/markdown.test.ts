/**
 * Markdown → HTML for the reports: tables become <table>s with their alignment, lists, headings
 * and paragraphs become elements, and nothing in the text survives as markup.
 */
import { SaxesParser } from "saxes";
import { describe, expect, it } from "vitest";
import { markdownToHtml } from "./markdown.js";

/** Parse as XML (the fragment wrapped in one root): every tag is closed and every & escaped. */
function elements(html: string): { name: string; text: string }[] {
  const parser = new SaxesParser();
  const found: { name: string; text: string }[] = [];
  const open: { name: string; text: string }[] = [];
  parser.on("opentag", (node) => {
    const element = { name: node.name, text: "" };
    found.push(element);
    open.push(element);
  });
  parser.on("text", (text) => {
    for (const element of open) element.text += text;
  });
  parser.on("closetag", () => void open.pop());
  parser.on("error", (error) => {
    throw error;
  });
  parser.write(`<root>${html}</root>`).close();
  return found.slice(1);
}

describe("markdownToHtml", () => {
  it("a pipe table becomes a <table> with a header row, body rows and the column alignment", () => {
    const html = markdownToHtml(
      [
        "| task | items | mean |",
        "|---|---:|:---:|",
        "| capitals | 25 | 0.9600 |",
        "| antonyms | 25 | 1.0000 |",
      ].join("\n"),
    );
    expect(html).toBe(
      [
        "<table>",
        '<thead><tr><th>task</th><th style="text-align:right">items</th><th style="text-align:center">mean</th></tr></thead>',
        "<tbody>",
        '<tr><td>capitals</td><td style="text-align:right">25</td><td style="text-align:center">0.9600</td></tr>',
        '<tr><td>antonyms</td><td style="text-align:right">25</td><td style="text-align:center">1.0000</td></tr>',
        "</tbody>",
        "</table>",
      ].join("\n"),
    );
    expect(html).not.toContain("|");
  });

  it("headings, lists, paragraphs, bold, code spans and fenced code", () => {
    const html = markdownToHtml(
      [
        "## forge eval",
        "",
        "**base** (`abc123`) scored",
        "well on every task.",
        "",
        "- ✅ regression: none",
        "- ❌ forgetting: arithmetic",
        "",
        "1. first",
        "2. second",
        "",
        "```",
        "| not | a table |",
        "```",
      ].join("\n"),
    );
    expect(elements(html).map((e) => e.name)).toEqual([
      "h2",
      "p",
      "strong",
      "code",
      "ul",
      "li",
      "li",
      "ol",
      "li",
      "li",
      "pre",
      "code",
    ]);
    expect(html).toContain(
      "<p><strong>base</strong> (<code>abc123</code>) scored well on every task.</p>",
    );
    expect(html).toContain("<pre><code>| not | a table |</code></pre>");
  });

  it("escapes every character of markup in cells, headings, list items, code and paragraphs", () => {
    const evil = `<script>alert("x")</script> & <img src=x onerror=alert(1)> 'q'`;
    const html = markdownToHtml(
      [
        `# ${evil}`,
        "",
        "| name | value |",
        "|---|---|",
        `| ${evil} | \`${evil}\` |`,
        "",
        `- ${evil}`,
        "",
        evil,
        "",
        "```",
        evil,
        "```",
      ].join("\n"),
    );
    expect(html).not.toMatch(/<script|<img|onerror=alert\(1\)>/);
    expect(html).toContain("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img");
    // every copy of the text comes back as text, not markup
    const texts = elements(html).filter((e) => ["h1", "td", "li", "p", "pre"].includes(e.name));
    for (const e of texts) expect(e.text).toContain(`<script>alert("x")</script> & <img`);
    expect(elements(html).some((e) => e.name === "script" || e.name === "img")).toBe(false);
  });

  it("a cell may hold an escaped pipe; rows shorter than the header are padded", () => {
    const html = markdownToHtml("| a | b |\n|---|---|\n| x \\| y |\n");
    const cells = elements(html).filter((e) => e.name === "td" || e.name === "th");
    expect(cells.map((c) => c.text)).toEqual(["a", "b", "x | y", ""]);
  });

  it("links only to http(s); images show their alt text and load nothing", () => {
    const html = markdownToHtml(
      "See [forge](https://example.com/a?b=1&c=2), [bad](javascript:alert(1)) and ![loss](loss.svg).",
    );
    expect(html).toContain('<a href="https://example.com/a?b=1&amp;c=2">forge</a>');
    expect(html).not.toMatch(/href="javascript|src=/);
    expect(html).toContain("[loss]");
  });

  it("control characters XML cannot hold are written as their code", () => {
    expect(markdownToHtml("a\u0007b")).toBe("<p>a\\u0007b</p>");
  });
});

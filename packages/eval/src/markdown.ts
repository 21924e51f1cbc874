/**
 * Markdown → HTML for forge's own reports: the subset they are written in — ATX headings,
 * pipe tables (with `---:` alignment), `-`/`*` and `1.` lists, fenced code, paragraphs, and
 * inline `**bold**`, `` `code` ``, `[links](https://…)` and `![images](…)` (written as their
 * alt text: a report loads nothing). Every character of the input is escaped; no tag in the
 * input survives as a tag.
 */

/**
 * Characters XML 1.0 forbids even as character references: C0 controls other than tab, line
 * feed and carriage return, lone surrogates, U+FFFE and U+FFFF.
 */
const NOT_XML =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters XML cannot hold
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

const XML_ESCAPES: Record<string, string> = {
  "<": "&lt;",
  ">": "&gt;",
  "&": "&amp;",
  '"': "&quot;",
  "'": "&apos;",
  // kept as references: in an attribute, a literal tab or newline would be read as a space
  "\t": "&#9;",
  "\n": "&#10;",
  "\r": "&#13;",
};

/**
 * Text for an XML attribute or element (JUnit, SVG, HTML). A character XML cannot hold at all
 * (`\u0001`, an ANSI escape's `\u001b`) is written as its code, `\u001b`, so two names that
 * differ only there stay different and the document stays well-formed.
 */
export const escapeXml = (text: string) =>
  text
    .replace(NOT_XML, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)
    .replace(/[<>&"'\t\n\r]/g, (c) => XML_ESCAPES[c]!);

/** Escaped text with **bold**, links and images; code spans are split off first. */
function inline(text: string): string {
  return text
    .split(/(`[^`]*`)/)
    .map((part, i) => {
      if (i % 2 === 1) return `<code>${escapeXml(part.slice(1, -1))}</code>`;
      return escapeXml(part)
        .replace(/\*\*(.+?)\*\*/g, "<strong>$1</strong>")
        .replace(/!\[([^\]]*)\]\(([^)\s]*)\)/g, (_, alt: string) => `[${alt}]`)
        .replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, (whole, label: string, href: string) =>
          /^https?:\/\//.test(href) ? `<a href="${href}">${label}</a>` : whole,
        );
    })
    .join("");
}

/** The cells of a table row: split on `|` not escaped as `\|`, outer pipes dropped. */
function cells(line: string): string[] {
  let body = line.trim();
  if (body.startsWith("|")) body = body.slice(1);
  if (body.endsWith("|") && !body.endsWith("\\|")) body = body.slice(0, -1);
  return body.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));
}

const SEPARATOR = /^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$/;
const isTableRow = (line: string) => line.trim().startsWith("|");
const LIST_ITEM = /^\s*(?:([-*+])|(\d+)[.)])\s+(.*)$/;

/** Render forge's report Markdown as an HTML fragment (no `<html>`/`<body>`). */
export function markdownToHtml(markdown: string): string {
  const lines = markdown.replace(/\r\n?/g, "\n").split("\n");
  const out: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    if (line.trim() === "") {
      i++;
      continue;
    }
    const fence = /^\s*(```+|~~~+)/.exec(line);
    if (fence) {
      const code: string[] = [];
      i++;
      while (i < lines.length && !lines[i]!.trim().startsWith(fence[1]!)) code.push(lines[i++]!);
      i++; // the closing fence (or the end)
      out.push(`<pre><code>${code.map(escapeXml).join("\n")}</code></pre>`);
      continue;
    }
    const heading = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading) {
      const level = heading[1]!.length;
      out.push(`<h${level}>${inline(heading[2]!)}</h${level}>`);
      i++;
      continue;
    }
    if (isTableRow(line) && i + 1 < lines.length && SEPARATOR.test(lines[i + 1]!)) {
      const head = cells(line);
      const align = cells(lines[i + 1]!).map((c) =>
        c.endsWith(":") ? (c.startsWith(":") ? "center" : "right") : undefined,
      );
      const attr = (j: number) => (align[j] ? ` style="text-align:${align[j]}"` : "");
      i += 2;
      const rows: string[][] = [];
      while (i < lines.length && isTableRow(lines[i]!)) rows.push(cells(lines[i++]!));
      out.push(
        "<table>",
        `<thead><tr>${head.map((c, j) => `<th${attr(j)}>${inline(c)}</th>`).join("")}</tr></thead>`,
        "<tbody>",
        ...rows.map(
          (row) =>
            // a row with fewer cells than the header is padded; extra cells are kept
            `<tr>${Array.from({ length: Math.max(head.length, row.length) }, (_, j) => `<td${attr(j)}>${inline(row[j] ?? "")}</td>`).join("")}</tr>`,
        ),
        "</tbody>",
        "</table>",
      );
      continue;
    }
    const item = LIST_ITEM.exec(line);
    if (item) {
      const ordered = item[2] !== undefined;
      const items: string[] = [];
      while (i < lines.length) {
        const next = LIST_ITEM.exec(lines[i]!);
        if (next && (next[2] !== undefined) === ordered) {
          items.push(next[3]!);
          i++;
        } else if (items.length && /^\s{2,}\S/.test(lines[i]!)) {
          items[items.length - 1] += ` ${lines[i++]!.trim()}`; // a continuation line
        } else break;
      }
      const tag = ordered ? "ol" : "ul";
      out.push(`<${tag}>${items.map((t) => `<li>${inline(t)}</li>`).join("")}</${tag}>`);
      continue;
    }
    const paragraph: string[] = [];
    while (
      i < lines.length &&
      lines[i]!.trim() !== "" &&
      !/^\s{0,3}#{1,6}\s/.test(lines[i]!) &&
      !/^\s*(```|~~~)/.test(lines[i]!) &&
      !LIST_ITEM.test(lines[i]!) &&
      !(isTableRow(lines[i]!) && SEPARATOR.test(lines[i + 1] ?? ""))
    )
      paragraph.push(lines[i++]!.trim());
    out.push(`<p>${inline(paragraph.join(" "))}</p>`);
  }
  return out.join("\n");
}

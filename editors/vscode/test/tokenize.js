// Tokenise .ktplay files with the TextMate grammar through VS Code's own engine (vscode-textmate
// on vscode-oniguruma), and check what a reader sees: comments, strings (also over several lines),
// interpolations, keywords, versions, durations. Prints a JSON summary; exits 1 on the first
// file whose highlighting is wrong, naming the line.
//
//   node test/tokenize.js FILE_OR_DIR...
"use strict";
const fs = require("fs");
const path = require("path");
const vsctm = require("vscode-textmate");
const oniguruma = require("vscode-oniguruma");

const grammarPath = path.join(__dirname, "..", "syntaxes", "ktplay.tmLanguage.json");
const wasm = fs.readFileSync(require.resolve("vscode-oniguruma/release/onig.wasm")).buffer;

const STATEMENTS = ["rolling", "canary", "blue_green", "restart", "undo", "switch", "scale", "pause", "approve", "guard", "rollback"];
const DECLARATIONS = ["use", "playbook", "matrix", "component", "env", "stage", "let"];

function files(args) {
  const out = [];
  const walk = (p) => {
    if (fs.statSync(p).isDirectory()) {
      for (const e of fs.readdirSync(p).sort()) walk(path.join(p, e));
    } else if (p.endsWith(".ktplay")) {
      out.push(p);
    }
  };
  args.forEach(walk);
  return out;
}

async function main() {
  await oniguruma.loadWASM(wasm);
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scope) =>
      scope === "source.ktplay"
        ? vsctm.parseRawGrammar(fs.readFileSync(grammarPath, "utf8"), grammarPath)
        : null,
  });
  const grammar = await registry.loadGrammar("source.ktplay");
  const summary = { files: 0, lines: 0, tokens: 0, scopes: {} };
  const failures = [];
  for (const file of files(process.argv.slice(2))) {
    summary.files++;
    const lines = fs.readFileSync(file, "utf8").split("\n");
    let state = vsctm.INITIAL;
    let inRaw = false;
    lines.forEach((line, i) => {
      const r = grammar.tokenizeLine(line, state);
      state = r.ruleStack;
      summary.lines++;
      const where = `${file}:${i + 1}`;
      const scopeAt = (col) => {
        const t = r.tokens.find((t) => t.startIndex <= col && col < t.endIndex);
        return t ? t.scopes.join(" ") : "";
      };
      for (const t of r.tokens) {
        summary.tokens++;
        const s = t.scopes[t.scopes.length - 1];
        summary.scopes[s] = (summary.scopes[s] || 0) + 1;
      }
      const quotes = (line.match(/"""/g) || []).length;
      const startsRaw = inRaw;
      if (quotes % 2 === 1) inRaw = !inRaw;
      if (startsRaw) {
        // A line inside a raw string is string text, whatever it says.
        if (line.trim() && !scopeAt(line.search(/\S/)).includes("string.quoted.triple")) {
          failures.push(`${where}: a line inside """…""" is not string text: ${scopeAt(line.search(/\S/))}`);
        }
        return;
      }
      const trimmed = line.trim();
      const first = line.search(/\S/);
      if (trimmed.startsWith("#") && !scopeAt(first).includes("comment.line")) {
        failures.push(`${where}: a comment line is not a comment: ${scopeAt(first)}`);
      }
      const word = (trimmed.match(/^[a-z_]+/) || [""])[0];
      if (STATEMENTS.includes(word) && !scopeAt(first).includes("keyword.control.statement")) {
        failures.push(`${where}: the statement \`${word}\` is not a keyword: ${scopeAt(first)}`);
      }
      if (DECLARATIONS.includes(word) && !scopeAt(first).includes("storage.type")) {
        failures.push(`${where}: \`${word}\` is not a declaration: ${scopeAt(first)}`);
      }
      // Interpolations, strings, versions and trailing comments outside strings.
      // Text in comments and strings is not code: a version in a comment is comment text.
      const inText = (col) => /comment|string/.test(scopeAt(col));
      for (const m of line.matchAll(/(?<!\\)\$\{[a-z_][a-z0-9_.-]*\}/g)) {
        if (scopeAt(m.index).includes("comment")) continue;
        if (!scopeAt(m.index + 2).includes("variable.other.interpolation")) {
          failures.push(`${where}: \`${m[0]}\` is not an interpolation: ${scopeAt(m.index + 2)}`);
        }
      }
      for (const m of line.matchAll(/(?<=\s)\d+\.\d+\.(\d+|x)(-[0-9A-Za-z.-]+)?(?=\s|$)/g)) {
        if (!inText(m.index) && !scopeAt(m.index).includes("constant.numeric.version")) {
          failures.push(`${where}: the version \`${m[0]}\` is not a version: ${scopeAt(m.index)}`);
        }
      }
      for (const m of line.matchAll(/(?<=\s)\d+(ms|s|m|h)(?=\s|$)/g)) {
        if (!inText(m.index) && !scopeAt(m.index).includes("constant.numeric.duration")) {
          failures.push(`${where}: the duration \`${m[0]}\` is not a duration: ${scopeAt(m.index)}`);
        }
      }
      const hash = line.indexOf("  #");
      if (hash > 0 && !line.slice(0, hash).includes('"') && !scopeAt(hash + 2).includes("comment.line")) {
        failures.push(`${where}: a trailing comment is not a comment: ${scopeAt(hash + 2)}`);
      }
      const quote = line.indexOf('"');
      if (quote >= 0 && !line.slice(0, quote).includes("#") && !scopeAt(quote).includes("string.quoted")) {
        failures.push(`${where}: a string is not a string: ${scopeAt(quote)}`);
      }
    });
  }
  console.log(JSON.stringify(summary));
  if (failures.length) {
    console.error(failures.join("\n"));
    process.exit(1);
  }
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(2);
});

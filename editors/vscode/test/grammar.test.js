// Checks the TextMate grammar against .vnet files: the fixtures here, ../../examples and
// ../../tests. Every word is classified from SPEC 2.1 (independently of the grammar) and the
// scope the grammar gives its first character must agree: keywords, MACs, malformed MACs,
// ports and comments.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const vsctm = require("vscode-textmate");
const oniguruma = require("vscode-oniguruma");

const ROOT = path.resolve(__dirname, "..", "..", "..");
const KEYWORDS = new Set(["BEGIN", "END", "HOST", "AT", "ADD", "DELETE", "LINK", "TCP", "UDP", "FORWARD", "EDGE", "INTERFACE", "NOT", "ANY", "NONE"]);
const MAC = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;

async function loadGrammar() {
  const wasm = fs.readFileSync(path.join(path.dirname(require.resolve("vscode-oniguruma")), "onig.wasm"));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scopeName) => {
      if (scopeName !== "source.vnet") return null;
      const file = path.join(__dirname, "..", "syntaxes", "vnet.tmLanguage.json");
      return vsctm.parseRawGrammar(fs.readFileSync(file, "utf8"), file);
    },
  });
  return registry.loadGrammar("source.vnet");
}

/** Every .vnet file under `dir`, recursively; none when it does not exist. */
function vnetFiles(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === "node_modules" ? [] : vnetFiles(full);
    return entry.name.endsWith(".vnet") ? [full] : [];
  });
}

/** What SPEC 2.1 says a word is, as the prefix of the scope it must get; null: not checked. */
function expectedScope(word) {
  if (KEYWORDS.has(word.toUpperCase())) return "keyword.";
  if (MAC.test(word)) return "constant.other.mac-address.vnet";
  if (word.includes(":")) return "invalid.illegal.mac-address.vnet";
  if (/^[0-9]+$/.test(word)) return "constant.numeric.integer";
  return null;
}

/** The scopes at column `col` of a tokenized line. */
function scopesAt(tokens, col) {
  const token = tokens.find((t) => t.startIndex <= col && col < t.endIndex);
  return token ? token.scopes : [];
}

function checkFile(grammar, file, counts) {
  const lines = fs.readFileSync(file, "utf8").split(/\r?\n/);
  let ruleStack = vsctm.INITIAL;
  lines.forEach((line, n) => {
    const where = `${path.relative(ROOT, file)}:${n + 1}`;
    const result = grammar.tokenizeLine(line, ruleStack);
    ruleStack = result.ruleStack;
    const hash = line.indexOf("#");
    const code = hash >= 0 ? line.slice(0, hash) : line;
    if (hash >= 0) {
      const scopes = scopesAt(result.tokens, hash);
      assert.ok(scopes.includes("comment.line.number-sign.vnet"), `${where}: comment at ${hash + 1}: ${scopes}`);
      const last = scopesAt(result.tokens, line.length - 1);
      assert.ok(last.includes("comment.line.number-sign.vnet"), `${where}: comment runs to the end of the line`);
      counts.comments++;
    }
    for (const match of code.matchAll(/\S+/g)) {
      const word = match[0];
      const want = expectedScope(word);
      if (want === null) continue;
      const scopes = scopesAt(result.tokens, match.index);
      assert.ok(
        scopes.some((s) => s.startsWith(want)),
        `${where}: \`${word}\` at column ${match.index + 1} should be ${want}*, got ${scopes.join(" ")}`,
      );
      if (want === "keyword.") counts.keywords++;
      else if (want.startsWith("constant.other.mac")) counts.macs++;
      else if (want.startsWith("invalid")) counts.malformed++;
      else counts.numbers++;
    }
  });
}

const files = [
  ...vnetFiles(path.join(__dirname, "fixtures")),
  ...vnetFiles(path.join(ROOT, "examples")),
  ...vnetFiles(path.join(ROOT, "tests")),
];

test("the TextMate grammar scopes keywords, MACs, ports and comments in every .vnet file", async () => {
  const grammar = await loadGrammar();
  assert.ok(grammar, "grammar loads");
  const counts = { keywords: 0, macs: 0, malformed: 0, numbers: 0, comments: 0 };
  for (const file of files) {
    checkFile(grammar, file, counts);
  }
  console.log(`checked ${files.length} files: ${JSON.stringify(counts)}`);
  assert.ok(counts.keywords > 0 && counts.macs > 0 && counts.comments > 0 && counts.numbers > 0);
});

test("a HOST line names its parts", async () => {
  const grammar = await loadGrammar();
  const line = "HOST alice AT h-1.example.edu 5000 vmnet1 # Proxy";
  const { tokens } = grammar.tokenizeLine(line, vsctm.INITIAL);
  const at = (word) => scopesAt(tokens, line.indexOf(word)).at(-1);
  assert.equal(at("HOST"), "keyword.other.statement.vnet");
  assert.equal(at("alice"), "variable.parameter.user.vnet");
  assert.equal(at("AT"), "keyword.other.at.vnet");
  assert.equal(at("h-1.example.edu"), "entity.name.type.machine.vnet");
  assert.equal(at("5000"), "constant.numeric.integer.port.vnet");
  assert.equal(at("vmnet1"), "variable.other.property.interface.vnet");
  assert.equal(at("# Proxy"), "punctuation.definition.comment.vnet");
});

test("characters outside the alphabets are marked", async () => {
  const grammar = await loadGrammar();
  const line = "FORWARD EDGE bad@name ANY 00:50:56:00:21:01x a b";
  const { tokens } = grammar.tokenizeLine(line, vsctm.INITIAL);
  assert.ok(scopesAt(tokens, line.indexOf("@")).includes("invalid.illegal.character.vnet"));
  assert.ok(scopesAt(tokens, line.indexOf("00:")).includes("invalid.illegal.mac-address.vnet"));
  assert.ok(!scopesAt(tokens, line.indexOf("EDGE")).includes("invalid.illegal.character.vnet"));
});

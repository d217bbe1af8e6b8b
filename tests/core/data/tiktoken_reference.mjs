// Run from a directory whose node_modules holds js-tiktoken (tokenizer_parity_test.sh copies it there).
// The independent implementation Pangea's tokenizers are checked against: npm's js-tiktoken.
//   node tiktoken_reference.mjs ranks NAME OUT          the ranks as a tiktoken file (base64 token, rank)
//   node tiktoken_reference.mjs tokenizer-json NAME OUT  the same vocabulary as a Hugging Face tokenizer.json
//   node tiktoken_reference.mjs sample DIR ROOT         varied text files, about 4 MB in all (code from ROOT)
//   node tiktoken_reference.mjs compare NAME SHARD FILE...  js-tiktoken's ids of each file (ordinary
//        text, then the document end) against a Pangea shard; prints the first difference
import { readFileSync, writeFileSync, readdirSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { Tiktoken } from "js-tiktoken/lite";

const [mode, ...args] = process.argv.slice(2);

async function encoding(name) {
  const ranks = (await import(`js-tiktoken/ranks/${name}`)).default;
  return new Tiktoken(ranks);
}

// rankMap keys are comma-joined byte values.
function tokens(enc) {
  return [...enc.rankMap.entries()].map(([key, rank]) => [Uint8Array.from(key.split(",").map(Number)), rank]);
}

// GPT-2's byte-level alphabet, as tokenizer.json writes bytes.
function byteLevel() {
  const table = [];
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    table.push(String.fromCodePoint(printable ? b : next++));
  }
  return table;
}

// The two tokens a token is merged from: BPE over its bytes with the ranks below its own.
function split(bytes, rank, rankOf) {
  let parts = Array.from(bytes, (_, i) => [i, i + 1]);
  const rankOfPart = (a, b) => rankOf.get(bytes.slice(a, b).join(","));
  while (parts.length > 2) {
    let best = null;
    for (let i = 0; i + 1 < parts.length; i++) {
      const r = rankOfPart(parts[i][0], parts[i + 1][1]);
      if (r !== undefined && r < rank && (best === null || r < best[0])) best = [r, i];
    }
    if (best === null) break;
    const i = best[1];
    parts.splice(i, 2, [parts[i][0], parts[i + 1][1]]);
  }
  return parts.length === 2 ? parts : null;
}

function sample(dir, root) {
  mkdirSync(dir, { recursive: true });
  let seed = 12345;
  const random = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const pick = (list) => list[random(list.length)];
  const words = ["the", "model", "trains", "on", "shards", "Pangea's", "we'll", "they'RE", "don't", "I'M",
                 "naïve", "café", "Straße", "élève", "über", "mañana", "東京", "日本語の文章", "데이터", "Привет",
                 "мир", "γειά", "σου", "مرحبا", "שלום", "नमस्ते", "🙂", "🚀🚀", "👩‍💻", "e\u0301", "ﬁ", "Ⅻ", "²³",
                 "x_1", "foo.bar()", "#include", "0x1F", "3.14159", "1,000,000", "2024-12-04", "$HOME", "a/b/c"];
  const spaces = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000", "        "];
  // Prose and mixed scripts.
  let prose = "";
  while (prose.length < 2_000_000) {
    prose += pick(words) + (random(5) === 0 ? pick(spaces) : " ");
    if (random(12) === 0) prose += pick([".", ",", "!", "?", "...", ";", ":", "—", "\"", "'", "(", ")"]) + " ";
  }
  writeFileSync(join(dir, "1-prose.txt"), prose);
  // Digits and whitespace runs.
  let digits = "";
  while (digits.length < 500_000) {
    digits += String(random(1_000_000_007)) + pick(spaces) + "=" + " ".repeat(random(40)) + String(random(100)) + pick(spaces);
    if (random(50) === 0) digits += "\n".repeat(random(6)) + "\t".repeat(random(4));
  }
  writeFileSync(join(dir, "2-digits.txt"), digits);
  // Code: this repository's own sources.
  let code = "";
  for (const sub of ["core/data", "core/collective", "plugins/compress/fp4", "python/pangea", "bench", "docs"]) {
    for (const name of readdirSync(join(root, sub)).sort()) {
      try { code += readFileSync(join(root, sub, name), "utf8"); } catch { /* a directory */ }
      if (code.length > 2_000_000) break;
    }
  }
  writeFileSync(join(dir, "3-code.txt"), code);
  // Random code points (valid UTF-8): every plane's letters, marks, symbols.
  let unicode = "";
  while (unicode.length < 300_000) {
    const ranges = [[0x20, 0x7e], [0xa0, 0x2ff], [0x370, 0x6ff], [0x900, 0x97f], [0x3040, 0x30ff], [0x4e00, 0x4fff],
                    [0xac00, 0xacff], [0x1f300, 0x1f64f], [0x2000, 0x206f], [0x10000, 0x1007f]];
    const [lo, hi] = pick(ranges);
    unicode += String.fromCodePoint(lo + random(hi - lo + 1));
    if (random(20) === 0) unicode += pick(spaces);
  }
  writeFileSync(join(dir, "4-unicode.txt"), unicode);
}

if (mode === "ranks") {
  const [name, out] = args;
  const enc = await encoding(name);
  const lines = tokens(enc).sort((a, b) => a[1] - b[1]).map(([bytes, rank]) => `${Buffer.from(bytes).toString("base64")} ${rank}`);
  writeFileSync(out, lines.join("\n") + "\n");
} else if (mode === "tokenizer-json") {
  const [name, out] = args;
  const enc = await encoding(name);
  const table = byteLevel();
  const text = (bytes) => Array.from(bytes, (b) => table[b]).join("");
  const all = tokens(enc).sort((a, b) => a[1] - b[1]);
  const vocab = {};
  const merges = [];
  for (const [bytes, rank] of all) {
    vocab[text(bytes)] = rank;
    if (bytes.length < 2) continue;
    const parts = split(bytes, rank, enc.rankMap);
    if (parts === null) throw new Error(`token ${rank} has no two-token split`);
    merges.push([text(bytes.slice(...parts[0])), text(bytes.slice(...parts[1]))]);
  }
  const added = Object.entries(enc.specialTokens).map(([content, id]) => ({ id, content, special: true }));
  writeFileSync(out, JSON.stringify({
    version: "1.0", normalizer: null, added_tokens: added,
    pre_tokenizer: { type: "Sequence", pretokenizers: [
      { type: "Split", pattern: { Regex: enc.patStr }, behavior: "Isolated", invert: false },
      { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false }] },
    model: { type: "BPE", ignore_merges: true, vocab, merges },
  }));
} else if (mode === "sample") {
  sample(args[0], args[1]);
} else if (mode === "compare") {
  const [name, shard, ...files] = args;
  const enc = await encoding(name);
  const end = enc.specialTokens["<|endoftext|>"];
  const expected = [];
  let bytes = 0;
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    bytes += Buffer.byteLength(text);
    for (const id of enc.encode(text, [], [])) expected.push(id);
    expected.push(end);
  }
  const data = readFileSync(shard);
  const width = data.readUInt32LE(12), count = Number(data.readBigUInt64LE(16));
  const got = [];
  for (let i = 0; i < count; i++) got.push(width === 2 ? data.readUInt16LE(32 + 2 * i) : data.readUInt32LE(32 + 4 * i));
  let first = -1;
  for (let i = 0; i < Math.max(got.length, expected.length); i++)
    if (got[i] !== expected[i]) { first = i; break; }
  if (first >= 0) {
    const show = (ids) => JSON.stringify(enc.decode(ids.slice(Math.max(0, first - 5), first + 5).filter((x) => x !== undefined)));
    console.log(`MISMATCH at token ${first} of ${expected.length} (pangea ${got.length}): js-tiktoken ` +
                `${expected.slice(first, first + 5)} ${show(expected)}, pangea ${got.slice(first, first + 5)} ${show(got)}`);
    process.exit(1);
  }
  console.log(`${name}: ${expected.length} ids equal on ${files.length} files, ${(bytes / 1e6).toFixed(2)} MB`);
} else {
  console.error("usage: see the head of this file");
  process.exit(2);
}

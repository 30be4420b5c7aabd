// Generates worker/token/testdata/<encoding>_golden.json (cl100k_base,
// o200k_base) from the reference tokenizer (npm "tiktoken", OpenAI's Rust
// core compiled to WASM).
// Run through scripts/tiktoken-golden.sh, which installs the pinned package.
import { get_encoding } from "tiktoken";
import { readFileSync, writeFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

const [outFile, corpusDir, encodingName = "cl100k_base"] = process.argv.slice(2);
const enc = get_encoding(encodingName);

const fixed = [
  "", "a", "hello world", "Hello, World!", "a\n  \nb", "a\n\n\nb", "a \n b", "  leading", "trailing  ",
  "trailing\n", "trailing \n ", "x \n\n  y", "tabs\t\tand\t spaces", "crlf\r\nline\r\n\r\nnext", "\r\r\n\n",
  "it's I'M we'll they're you've he'd DON'T 'S 'x", "ſ'ſ 'ſ", "1234567 12 3.14159 1,000,000", "٣٤٥ ²³ Ⅻ ⅓",
  "naïve café résumé", "日本語のテキストです。", "emoji 🚀🔥 mixed 👩‍👩‍👧", "e\u0301 combining", "nbsp\u00a0here",
  "line\u2028sep", "ideographic\u3000space", "<|endoftext|> is ordinary", "!!!???...", " !!!\n\n", "a.\nb", "a?!\r\n",
  "    def f(x):\n        return x  # comment\n", "{\"json\": [1, 2, 3], \"k\": null}\n",
  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "x".repeat(5000), " ".repeat(300) + "y", "\n".repeat(50), "=".repeat(1000), "ab".repeat(700),
  // o200k_base's case-aware words, contractions after words and "/" runs.
  "helloWorld HTTPServer getHTTPResponse iPhone McDonald's", "ǅungla ǈubljana ʰello aʰb ʰʲ", "日本Tokyo東京ok",
  "don't DON'T Don'T 's 'S x's", "a/b //\n/ ...\n/\n", "e\u0301\u0301 \u0301x \u0301 X\u0301Y\u0301z",
];

// Deterministic pseudo-random strings over the character classes that
// exercise every branch of the pre-tokenizer.
let seed = 20261123;
const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
const pools = [
  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ", "  ", "\n", "\r\n", "\t",
  ".,;:!?-_()[]{}<>/\\\"@#$%^&*+=|~`", "'", "'s", "'LL", "'Re", "éàüßøñç", "日本語中文", "한국어", "🚀🔥👍",
  "\u0301\u0308", "\u00a0", "\u3000", "\u2028", "ſK", "٣٤²Ⅻ", "ѐѓєї", "\u200d", "\x0b\x0c",
  "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "ǅǈǋ", "ʰʲˆ", "/", "ÀÉÎÕÜ",
];
const random = [];
for (let i = 0; i < 3000; i++) {
  const len = 1 + rnd(60);
  let s = "";
  for (let j = 0; j < len; j++) {
    const pool = [...pools[rnd(pools.length)]];
    s += pool.length <= 2 ? pool.join("") : pool[rnd(pool.length)];
  }
  random.push(s);
}

const files = [];
if (corpusDir) {
  const walk = (dir, rel) => {
    for (const ent of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = rel ? rel + "/" + ent.name : ent.name;
      if (ent.isDirectory()) {
        // documents/ holds PDF, Office, EPUB and HTML files: their text is
        // what stevedore extracts, counted by the e2e test itself.
        if (path !== "documents" && path !== "scans") walk(join(dir, ent.name), path);
        continue;
      }
      const bytes = readFileSync(join(dir, ent.name));
      if (bytes.includes(0)) continue; // binary
      let text, charset;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      } catch {
        // Not UTF-8: the corpus's legacy files are windows-1252 (WHATWG's
        // decoder, the reference for what stevedore decodes them to).
        text = new TextDecoder("windows-1252").decode(bytes);
        charset = "windows-1252";
      }
      files.push(charset ? { name: path, count: enc.encode_ordinary(text).length, charset } : { name: path, count: enc.encode_ordinary(text).length });
    }
  };
  walk(corpusDir, "");
}

const cases = [...fixed, ...random].map((text) => ({ text, ids: Array.from(enc.encode_ordinary(text)) }));
writeFileSync(outFile, JSON.stringify({ encoding: encodingName, reference: "npm tiktoken@1.0.22", cases, files }, null, 0) + "\n");
enc.free();
console.log(`wrote ${cases.length} cases and ${files.length} corpus files to ${outFile}`);

// Parse an AsyncAPI document with the official parser and print its diagnostics as JSON.
//
//   node asyncapi_validate.mjs DOCUMENT.json
//
// The parser is looked up in $PIZZA_ASYNCAPI_PARSER_DIR (an `npm install --prefix DIR
// @asyncapi/parser@3`), default ~/.cache/pizza-asyncapi, so the repo needs no node_modules.
// Prints {"parsed": bool, "diagnostics": [{code, message, severity, path}]}; severity 0 is
// an error, 1 a warning, 2 info, 3 a hint. Exits 2 if the parser cannot be loaded.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { join } from "node:path";

const dir = process.env.PIZZA_ASYNCAPI_PARSER_DIR || join(homedir(), ".cache", "pizza-asyncapi");
let Parser;
try {
  ({ Parser } = createRequire(join(dir, "noop.js"))("@asyncapi/parser"));
} catch (error) {
  console.error(`cannot load @asyncapi/parser from ${dir}: ${error.message}`);
  process.exit(2);
}

const document = readFileSync(process.argv[2], "utf8");
const { document: parsed, diagnostics } = await new Parser().parse(document);
const result = {
  parsed: parsed !== undefined,
  diagnostics: diagnostics.map((d) => ({
    code: d.code,
    message: d.message,
    severity: d.severity,
    path: d.path,
  })),
};
console.log(JSON.stringify(result));

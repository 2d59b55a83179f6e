// Usage: node conformance-summary.mjs RAWDIR OUTDIR
// Reads the per-scenario RAWDIR/server-<scenario>-<timestamp>/checks.json
// files written by `conformance server -o RAWDIR` and writes
//   OUTDIR/results.json  [{scenario, check, name, status, errorMessage?}] sorted,
//                        timestamps/details dropped (details hold ports, ids)
//   OUTDIR/summary.txt   "scenario/check STATUS" per line, sorted, INFO
//                        checks left out (they log each request/event and
//                        carry ports, session and event ids)
// and prints "conformance: N passed, N failed, N warnings" to stdout.
// Exit 0 if no check is FAILURE, 1 if some are, 2 if RAWDIR has no results.
import fs from "node:fs";
import path from "node:path";

const [rawDir, outDir] = process.argv.slice(2);
const results = [];
for (const dir of fs.existsSync(rawDir) ? fs.readdirSync(rawDir) : []) {
  // Directory name: server-<scenario>-<ISO timestamp with ':' and '.' as '-'>.
  const m = /^server-(.+)-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d+Z$/.exec(dir);
  const file = path.join(rawDir, dir, "checks.json");
  if (!m || !fs.existsSync(file)) continue;
  for (const c of JSON.parse(fs.readFileSync(file, "utf8"))) {
    results.push({ scenario: m[1], check: c.id, name: c.name, status: c.status,
      ...(c.errorMessage ? { errorMessage: c.errorMessage } : {}) });
  }
}
if (results.length === 0) {
  console.error(`no checks.json under ${rawDir}`);
  process.exit(2);
}
const key = (r) => `${r.scenario}/${r.check} ${r.status}`;
results.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
fs.writeFileSync(path.join(outDir, "results.json"), JSON.stringify(results, null, 2) + "\n");
const lines = results.filter((r) => r.status !== "INFO").map(key);
fs.writeFileSync(path.join(outDir, "summary.txt"), lines.join("\n") + "\n");
const n = (s) => results.filter((r) => r.status === s).length;
console.log(`conformance: ${n("SUCCESS")} passed, ${n("FAILURE")} failed, ${n("WARNING")} warnings`);
process.exit(n("FAILURE") > 0 ? 1 : 0);

// Independent check of a push: the FHIR test server (tests/fhir_server)
// must hold exactly one resource per entry of the transaction Bundle that
// was pushed, however many times it was pushed.
//
//   node check_push.mjs BUNDLE_FILE STATS_URL [TYPE=N]...
//
// BUNDLE_FILE is the fhir-r4-transaction rendering of the pushed
// enrollment; STATS_URL the server's /admin/stats. Prints one line per
// resource type ("Type: expected N, stored M") and exits 1 when any count
// differs or the Bundle is not a transaction.
import { readFileSync } from 'node:fs';

const [bundleFile, statsUrl] = process.argv.slice(2);
if (!bundleFile || !statsUrl) {
  console.error('usage: node check_push.mjs BUNDLE_FILE STATS_URL');
  process.exit(2);
}
const bundle = JSON.parse(readFileSync(bundleFile, 'utf8'));
let failed = false;
if (bundle.resourceType !== 'Bundle' || bundle.type !== 'transaction') {
  console.log(`${bundleFile}: not a transaction Bundle`);
  process.exit(1);
}
const expected = {};
for (const entry of bundle.entry ?? []) {
  const type = entry.resource?.resourceType;
  expected[type] = (expected[type] ?? 0) + 1;
}
const stats = await (await fetch(statsUrl)).json();
const stored = stats.resources ?? {};
// Resources the EHR held before (the patient and the clinician the export
// refers to) are given as TYPE=N arguments after the URL.
for (const arg of process.argv.slice(4)) {
  const [type, n] = arg.split('=');
  expected[type] = (expected[type] ?? 0) + Number(n);
}
const types = new Set([...Object.keys(expected), ...Object.keys(stored)]);
for (const type of [...types].sort()) {
  const e = expected[type] ?? 0;
  const s = stored[type] ?? 0;
  console.log(`${type}: expected ${e}, stored ${s}`);
  if (e !== s) failed = true;
}
process.exit(failed ? 1 : 0);

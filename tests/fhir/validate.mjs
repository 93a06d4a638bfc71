// Independent check of the fhir-r4 exporter's output.
//
//   node validate.mjs [--external REF]... FILE...
//
// A FILE ending in .ndjson holds one resource per line (the
// fhir-r4-resources form); any other FILE holds one Bundle (collection or
// transaction). Every resource is validated on its own, and every Bundle as
// a whole, with FHIR.js (npm package `fhir`), which checks resources
// against the official FHIR R4 JSON schema and required value sets;
// unexpected properties are errors. Checks of our own on top:
// - every Reference.reference resolves: in a Bundle to an entry's fullUrl
//   (or, for "Type/id", to an entry with that type and id), in NDJSON to a
//   line with that type and id; REFs given with --external (the patient
//   and the clinician, which live in the EHR) are allowed to be outside;
// - fullUrls and ids are unique; transaction entries carry request.method
//   and request.url; collection entries carry none;
// - instants and dateTimes name real moments (FHIR.js checks only their
//   pattern).
// Prints one line per problem ("FILE: Type/id: location: message") and a
// summary line per file; exits 1 when there is any problem.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
let Fhir;
try {
  ({ Fhir } = require('fhir'));
} catch (e) {
  console.error(
    'validate.mjs: the npm package "fhir" is missing in tests/fhir/node_modules; ' +
      'run scripts/install-interop-deps.sh (or: cd tests/fhir && npm ci)');
  process.exit(2);
}
const fhirVersion = require('fhir/package.json').version;
const fhir = new Fhir();

const external = new Set();
const files = [];
const args = process.argv.slice(2);
for (let i = 0; i < args.length; ++i) {
  if (args[i] === '--external') external.add(args[++i]);
  else files.push(args[i]);
}
if (files.length === 0) {
  console.error('usage: node validate.mjs [--external REF]... FILE...');
  process.exit(2);
}

const dateKeys = new Set([
  'recorded', 'issued', 'authored', 'timestamp', 'start', 'end',
  'effectiveDateTime', 'created', 'time', 'startDate', 'lastUpdated',
]);

// Calls visit(key, value, path) for every property below `node`.
function walk(node, path, visit) {
  if (Array.isArray(node)) {
    node.forEach((v, i) => walk(v, `${path}[${i}]`, visit));
  } else if (node !== null && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      visit(k, v, `${path}.${k}`, node);
      walk(v, `${path}.${k}`, visit);
    }
  }
}

let problems = 0;
function problem(file, what, location, message) {
  problems += 1;
  console.log(`${file}: ${what}: ${location}: ${message}`);
}

// Validates one resource with FHIR.js and our date check; returns the
// references it makes as [path, reference].
function checkResource(file, resource, where) {
  const what = `${resource.resourceType}/${resource.id ?? '(no id)'} (${where})`;
  const result = fhir.validate(resource, { errorOnUnexpected: true });
  const errors = result.messages.filter((m) => m.severity === 'error');
  for (const m of errors) problem(file, what, m.location, m.message);
  if (!result.valid && errors.length === 0) {
    problem(file, what, resource.resourceType, 'invalid (no error message)');
  }
  const references = [];
  walk(resource, resource.resourceType, (key, value, path, parent) => {
    if (key === 'reference' && typeof value === 'string' &&
        typeof parent === 'object') {
      references.push([path, value]);
    }
    if (dateKeys.has(key) && typeof value === 'string' &&
        Number.isNaN(Date.parse(value))) {
      problem(file, what, path, `"${value}" is not a real date or time`);
    }
  });
  return { what, references };
}

for (const file of files) {
  const text = readFileSync(file, 'utf8');
  let resourceCount = 0;
  let referenceCount = 0;
  if (file.endsWith('.ndjson')) {
    const lines = text.split('\n').filter((l) => l.length > 0);
    const resources = lines.map((line, i) => {
      try {
        return JSON.parse(line);
      } catch (e) {
        problem(file, `line ${i + 1}`, 'JSON', e.message);
        return null;
      }
    });
    const known = new Set();
    resources.forEach((r, i) => {
      if (r === null) return;
      const key = `${r.resourceType}/${r.id}`;
      if (known.has(key)) problem(file, key, `line ${i + 1}`, 'duplicate id');
      known.add(key);
    });
    resources.forEach((r, i) => {
      if (r === null) return;
      resourceCount += 1;
      const { what, references } = checkResource(file, r, `line ${i + 1}`);
      for (const [path, ref] of references) {
        referenceCount += 1;
        if (!known.has(ref) && !external.has(ref)) {
          problem(file, what, path, `reference "${ref}" does not resolve`);
        }
      }
    });
  } else {
    const bundle = JSON.parse(text);
    const whole = fhir.validate(bundle, { errorOnUnexpected: true });
    for (const m of whole.messages.filter((m) => m.severity === 'error')) {
      problem(file, 'Bundle', `${m.resourceId ?? ''} ${m.location}`, m.message);
    }
    if (bundle.resourceType !== 'Bundle') {
      problem(file, 'Bundle', 'resourceType', `is ${bundle.resourceType}`);
    }
    const entries = bundle.entry ?? [];
    const fullUrls = new Set();
    const byTypeAndId = new Set();
    entries.forEach((e, i) => {
      if (!e.fullUrl) problem(file, `entry[${i}]`, 'fullUrl', 'missing');
      if (fullUrls.has(e.fullUrl)) {
        problem(file, `entry[${i}]`, 'fullUrl', `duplicate ${e.fullUrl}`);
      }
      fullUrls.add(e.fullUrl);
      if (e.resource?.id) byTypeAndId.add(`${e.resource.resourceType}/${e.resource.id}`);
      if (bundle.type === 'transaction') {
        if (!e.request?.method || !e.request?.url) {
          problem(file, `entry[${i}]`, 'request', 'method and url are required');
        }
      } else if (e.request) {
        problem(file, `entry[${i}]`, 'request', `not allowed in a ${bundle.type}`);
      }
    });
    entries.forEach((e, i) => {
      if (!e.resource) {
        problem(file, `entry[${i}]`, 'resource', 'missing');
        return;
      }
      resourceCount += 1;
      const { what, references } = checkResource(file, e.resource, `entry[${i}]`);
      for (const [path, ref] of references) {
        referenceCount += 1;
        if (!fullUrls.has(ref) && !byTypeAndId.has(ref) && !external.has(ref)) {
          problem(file, what, path, `reference "${ref}" does not resolve`);
        }
      }
    });
  }
  console.log(`${file}: ${resourceCount} resources, ${referenceCount} references ` +
              `checked with fhir ${fhirVersion}`);
}
console.log(`${problems} problems`);
process.exit(problems === 0 ? 0 : 1);

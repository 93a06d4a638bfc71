// Independent check of workflows/schema/workflow.schema.json: a second
// implementation (ajv, JSON Schema draft 2020-12, with the `yaml` package
// reading YAML 1.2) must accept the shipped templates and judge every corpus
// file as its "# schema:" header line says:
//   # schema: valid               the mistake is beyond a schema (references,
//                                 conditions, graph): the schema accepts it
//   # schema: invalid /json/path  the schema rejects it, with an error at
//                                 that path (for an unknown or a missing
//                                 key, the key's own path)
//   # schema: unparsable          the file is not YAML at all
//
// Usage: node schema_check.mjs [SOURCE_DIR]  (default: the repository root)
// Exit status 0 when every check holds, 1 otherwise; 2 when the npm packages
// are not installed (see the message).
import { readFileSync, readdirSync, existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const sourceDir = resolve(process.argv[2] ?? join(here, '..', '..'));

// The packages must be installed from the current lock file (the test in
// scripts/install-interop-deps.sh: npm ci writes node_modules/.package-lock.json,
// which must be newer than package-lock.json).
function missingDeps(reason) {
  console.error(
      `workflow_schema_ajv: NOT RUN: ${reason}.\n` +
      `Install the pinned npm packages (ajv, yaml) from the lock file:\n` +
      `  (cd tests/workflows && npm ci)\n` +
      `(\`make test\` does this through scripts/install-interop-deps.sh).`);
  process.exit(2);
}
const installed = join(here, 'node_modules', '.package-lock.json');
if (!existsSync(installed)) {
  missingDeps(`${join(here, 'node_modules')} is missing`);
}
if (statSync(installed).mtimeMs <= statSync(join(here, 'package-lock.json')).mtimeMs) {
  missingDeps('node_modules is older than package-lock.json');
}
const require = createRequire(import.meta.url);
let Ajv2020, YAML;
try {
  Ajv2020 = require('ajv/dist/2020').default;
  YAML = require('yaml');
} catch (e) {
  missingDeps(`ajv or yaml cannot be loaded (${e.code ?? e.message})`);
}

const schemaPath = join(sourceDir, 'workflows', 'schema', 'workflow.schema.json');
const schema = JSON.parse(readFileSync(schemaPath, 'utf8'));
const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
const validate = ajv.compile(schema);

// Where an error points: for an unknown or a missing key, the key itself.
function errorPaths(errors) {
  return (errors ?? []).map((e) => {
    if (e.keyword === 'additionalProperties') {
      return `${e.instancePath}/${e.params.additionalProperty}`;
    }
    if (e.keyword === 'required') {
      return `${e.instancePath}/${e.params.missingProperty}`;
    }
    return e.instancePath;
  });
}

function describe(errors) {
  return (errors ?? [])
      .map((e) => `    ${e.instancePath || '/'} ${e.message}` +
                  (e.params?.additionalProperty
                     ? ` "${e.params.additionalProperty}"` : ''))
      .join('\n');
}

// parse returns {doc} or {error}: YAML 1.2 core schema (so 20:00 is the
// string "20:00"), and a key written twice in one map is an error.
function parse(path) {
  const doc = YAML.parseDocument(readFileSync(path, 'utf8'), { prettyErrors: false });
  if (doc.errors.length > 0) return { error: doc.errors[0].message };
  return { doc: doc.toJS() ?? {} };
}

let failures = 0;
let checks = 0;
function fail(message) {
  failures += 1;
  console.error(`FAIL ${message}`);
}
function pass(message) {
  console.log(`ok   ${message}`);
}

// 1. The shipped templates are valid.
const workflowsDir = join(sourceDir, 'workflows');
const shipped = readdirSync(workflowsDir).filter((f) => f.endsWith('.yaml')).sort();
if (shipped.length < 2) fail(`expected the shipped templates in ${workflowsDir}`);
for (const f of shipped) {
  checks += 1;
  const { doc, error } = parse(join(workflowsDir, f));
  if (error) {
    fail(`workflows/${f}: not YAML: ${error}`);
  } else if (!validate(doc)) {
    fail(`workflows/${f}: rejected by the schema:\n${describe(validate.errors)}`);
  } else {
    pass(`workflows/${f}: valid`);
  }
}

// 2. Each corpus file is judged as its "# schema:" line says.
const corpusDir = join(here, 'corpus');
const corpus = readdirSync(corpusDir).filter((f) => f.endsWith('.yaml')).sort();
let rejected = 0;
for (const f of corpus) {
  checks += 1;
  const text = readFileSync(join(corpusDir, f), 'utf8');
  const m = text.match(/^# schema: (valid|unparsable|invalid (\/\S*))\s*$/m);
  if (!m) {
    fail(`corpus/${f}: no "# schema: valid|invalid PATH|unparsable" line`);
    continue;
  }
  const { doc, error } = parse(join(corpusDir, f));
  if (m[1] === 'unparsable') {
    if (error) pass(`corpus/${f}: not YAML, as stated`);
    else fail(`corpus/${f}: stated unparsable, but it parsed`);
    continue;
  }
  if (error) {
    fail(`corpus/${f}: not YAML: ${error}`);
    continue;
  }
  const ok = validate(doc);
  if (m[1] === 'valid') {
    if (ok) pass(`corpus/${f}: valid for the schema (the loader rejects it)`);
    else fail(`corpus/${f}: stated schema-valid, but rejected:\n${describe(validate.errors)}`);
    continue;
  }
  const want = m[2];
  if (ok) {
    fail(`corpus/${f}: the schema accepted it; expected an error at ${want}`);
  } else if (!errorPaths(validate.errors).includes(want)) {
    fail(`corpus/${f}: rejected, but with no error at ${want}:\n${describe(validate.errors)}`);
  } else {
    rejected += 1;
    pass(`corpus/${f}: invalid at ${want}`);
  }
}

// 3. The duration and time-of-day formats agree with the loader's
// ParseIsoDuration / ParseLocalTimeOfDay (engine/model/duration.cc).
const formats = {
  duration: {
    valid: ['P1W', 'P2W', 'P1M', 'P2M', 'P10D', 'P1Y2M', 'P1M2W', 'PT4H',
            'P1DT12H', 'PT30M', 'P1Y2M3W4DT5H6M7S', 'P0W1D', 'P10000D',
            'P007D', 'PT1S'],
    invalid: ['', 'P', '1W', 'P0W', 'P0D', 'PT0H', 'PW', 'P1', 'P1W1M', 'P1H',
              'P-1W', 'bimonthly', 'P1W1W', 'PT', 'P1DT', 'P1.5W', 'p1w',
              'P10001D', 'PT1D', 'P1T1H', ' P1W', 'P1W '],
  },
  localTime: {
    valid: ['00:00', '08:00', '20:00', '23:59'],
    invalid: ['24:00', '25:00', '8pm', '8:00', '20:60', '2000', '20:00:00', ''],
  },
};
for (const [name, cases] of Object.entries(formats)) {
  const check = ajv.getSchema(`${schema.$id}#/$defs/${name}`);
  for (const [want, values] of [[true, cases.valid], [false, cases.invalid]]) {
    for (const v of values) {
      checks += 1;
      if (check(v) !== want) {
        fail(`$defs/${name}: ${JSON.stringify(v)} should be ${want ? 'valid' : 'invalid'}`);
      }
    }
  }
}

// The schema-detectable mistakes the brief names must be among the rejected.
for (const f of ['unknown-top-level-key.yaml', 'duration-bimonthly.yaml',
                 'duration-zero.yaml', 'duration-missing-p.yaml',
                 'remind-at-25h.yaml', 'remind-at-8pm.yaml',
                 'unknown-task-kind.yaml', 'stage-exit-typo.yaml']) {
  checks += 1;
  const text = existsSync(join(corpusDir, f)) ? readFileSync(join(corpusDir, f), 'utf8') : '';
  if (!/^# schema: invalid /m.test(text)) fail(`corpus/${f}: missing or not stated schema-invalid`);
}

console.log(`${checks} checks, ${rejected} corpus files rejected by the schema, ${failures} failures`);
process.exit(failures === 0 ? 0 : 1);

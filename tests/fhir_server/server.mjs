// A small FHIR R4 server for tests of pushes to an EHR. Plain node:http,
// data in memory, one process per test.
//
//   node server.mjs [--token TOKEN] [--max-body BYTES] [--base /fhir]
//
// Prints one line "fhir-test-server listening on 127.0.0.1:PORT" when it is
// ready (it listens on a free loopback port).
//
// FHIR endpoints (under --base, default /fhir), each answering
// application/fhir+json and requiring "Authorization: Bearer TOKEN" when
// --token is given (401 with an OperationOutcome otherwise):
//   POST <base>            a Bundle of type transaction (see Transaction)
//   GET  <base>/Type?identifier=system|value   a searchset Bundle with total
//   GET  <base>/Type       every resource of the type, as a searchset
//   GET  <base>/Type/id    one resource, or 404
//
// Transaction semantics, enforced: all entries succeed and are stored, or
// none is (the first failing entry's problem is answered as a 4xx
// OperationOutcome naming the entry). POST entries are creates whose
// request.url must be the resource's type; request.ifNoneExist
// ("identifier=system|value" or "_tag=system|code") makes it conditional: one stored match is
// answered "200 OK" with that resource's location and nothing is created,
// several matches fail the transaction with 412. PUT Type/id entries create
// or replace. The server assigns ids and rewrites every reference to an
// entry's fullUrl (urn:uuid:...) to the assigned "Type/id"; a reference that
// resolves neither to an entry nor to a stored resource fails the
// transaction (referential integrity, as production servers enforce it).
//
// Test control (no token needed), JSON bodies:
//   POST /admin/faults  {"status": 503, "count": 2}  answer the next 2 FHIR
//                       requests with 503 (any status; 4xx/5xx bodies are
//                       OperationOutcomes)
//                       {"hang": 1}       read the next request and never
//                                         answer it
//                       {"maxBody": 2000} answer 413 to bodies over 2000 bytes
//   GET  /admin/stats   {"requests": n, "transactions": n, "committed": n,
//                        "resources": {"Type": n}, "log": [...]} where log
//                       has one {method, path, status, requestId,
//                       idempotencyKey, contentType, accept, prefer,
//                       authorized} per FHIR request (never the token)
import http from 'node:http';
import { randomUUID } from 'node:crypto';

const args = process.argv.slice(2);
function option(name, fallback) {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}
const token = option('--token', '');
const base = option('--base', '/fhir').replace(/\/+$/, '');
let maxBody = Number(option('--max-body', '0'));

// Type -> Map(id -> resource)
const store = new Map();
let nextId = 1;
const stats = { requests: 0, transactions: 0, committed: 0, log: [] };
const faults = { status: 0, count: 0, hang: 0 };
// Sockets of hung requests, closed on shutdown.
const hung = new Set();

class FhirError extends Error {
  constructor(status, code, diagnostics, expression) {
    super(diagnostics);
    this.status = status;
    this.code = code;
    this.expression = expression;
  }
}

function outcome(code, diagnostics, expression) {
  const issue = { severity: 'error', code, diagnostics };
  if (expression) issue.expression = [expression];
  return { resourceType: 'OperationOutcome', issue: [issue] };
}

function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/fhir+json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function fail(res, error) {
  send(res, error.status, outcome(error.code, error.message, error.expression));
}

function typeStore(type) {
  if (!store.has(type)) store.set(type, new Map());
  return store.get(type);
}

// Token search on identifier or on meta.tag (the two search parameters a
// conditional create of ours uses; R4 Provenance has no identifier):
// "identifier=system|value" / "_tag=system|code", also "|value" (no
// system) or "value" (any system).
function parseIdentifierSearch(query, where) {
  const params = new URLSearchParams(query);
  const keys = [...params.keys()];
  if (keys.length !== 1 || (keys[0] !== 'identifier' && keys[0] !== '_tag')) {
    throw new FhirError(400, 'not-supported',
        `only "identifier=system|value" or "_tag=system|code" is supported, not "${query}"`,
        where);
  }
  const param = keys[0];
  const tokenText = params.get(param);
  const bar = tokenText.indexOf('|');
  if (bar < 0) return { param, system: null, value: tokenText };
  return { param, system: tokenText.slice(0, bar), value: tokenText.slice(bar + 1) };
}

function matchesIdentifier(resource, search) {
  // identifier is a list in most resources but a single value in some
  // (QuestionnaireResponse.identifier is 0..1).
  const list = (v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
  const tokens = search.param === '_tag' ?
      list(resource.meta?.tag).map((t) => ({ system: t.system, value: t.code })) :
      list(resource.identifier);
  return tokens.some((id) =>
    id.value === search.value &&
    (search.system === null ||
     (search.system === '' ? !id.system : id.system === search.system)));
}

function search(type, searchSpec) {
  return [...typeStore(type).values()].filter(
      (r) => matchesIdentifier(r, searchSpec));
}

// Calls fn(holder) for every object with a string "reference".
function eachReference(value, fn) {
  if (Array.isArray(value)) {
    value.forEach((v) => eachReference(v, fn));
  } else if (value && typeof value === 'object') {
    if (typeof value.reference === 'string') fn(value);
    for (const v of Object.values(value)) eachReference(v, fn);
  }
}

const typePattern = /^[A-Z][A-Za-z]+$/;
const idPattern = /^[A-Za-z0-9\-.]{1,64}$/;

// Transaction validates every entry, then stores all or nothing. Returns
// the transaction-response Bundle.
function transaction(bundle, minimal) {
  if (!bundle || bundle.resourceType !== 'Bundle') {
    throw new FhirError(400, 'invalid', 'the body is not a Bundle');
  }
  if (bundle.type !== 'transaction') {
    throw new FhirError(400, 'invalid',
        `Bundle.type is "${bundle.type}", not "transaction"`, 'Bundle.type');
  }
  const entries = bundle.entry || [];
  // Pass 1: what each entry does, and the id its fullUrl stands for.
  const plans = [];
  const fullUrls = new Map();  // fullUrl -> "Type/id"
  const conditionalKeys = new Set();
  entries.forEach((entry, i) => {
    const at = `Bundle.entry[${i}]`;
    const resource = entry.resource;
    if (!resource || !typePattern.test(resource.resourceType || '')) {
      throw new FhirError(400, 'required', 'entry has no resource with a resourceType', `${at}.resource`);
    }
    const type = resource.resourceType;
    const request = entry.request || {};
    let plan;
    if (request.method === 'POST') {
      if (request.url !== type) {
        throw new FhirError(400, 'invalid',
            `request.url "${request.url}" does not match resourceType ${type}`, `${at}.request.url`);
      }
      plan = { type, status: '201 Created', create: true };
      if (request.ifNoneExist !== undefined) {
        const spec = parseIdentifierSearch(request.ifNoneExist, `${at}.request.ifNoneExist`);
        const key = `${type}?${spec.param}=${spec.system}|${spec.value}`;
        if (conditionalKeys.has(key)) {
          throw new FhirError(400, 'duplicate',
              `a second conditional create of ${type} with the same identifier in one transaction`,
              `${at}.request.ifNoneExist`);
        }
        conditionalKeys.add(key);
        const found = search(type, spec);
        if (found.length > 1) {
          throw new FhirError(412, 'multiple-matches',
              `ifNoneExist matches ${found.length} ${type} resources`, `${at}.request.ifNoneExist`);
        }
        if (found.length === 1) {
          plan = { type, id: found[0].id, status: '200 OK', create: false };
        }
      }
      if (plan.create) plan.id = String(nextId + plans.filter((p) => p.assigns).length);
      plan.assigns = plan.create;
    } else if (request.method === 'PUT') {
      const [urlType, id, extra] = String(request.url || '').split('/');
      if (urlType !== type || !idPattern.test(id || '') || extra !== undefined) {
        throw new FhirError(400, 'invalid',
            `PUT request.url must be ${type}/<id>, not "${request.url}"`, `${at}.request.url`);
      }
      plan = { type, id, status: typeStore(type).has(id) ? '200 OK' : '201 Created', create: true };
    } else {
      throw new FhirError(400, 'not-supported',
          `request.method "${request.method}" is not supported (POST or PUT)`, `${at}.request.method`);
    }
    if (entry.fullUrl) {
      if (fullUrls.has(entry.fullUrl)) {
        throw new FhirError(400, 'duplicate', `fullUrl ${entry.fullUrl} appears twice`, `${at}.fullUrl`);
      }
      fullUrls.set(entry.fullUrl, `${type}/${plan.id}`);
    }
    plans.push(plan);
  });
  // Pass 2: the resources as they will be stored, references resolved.
  const now = new Date().toISOString();
  const writes = [];
  entries.forEach((entry, i) => {
    const plan = plans[i];
    if (!plan.create) return;
    const resource = structuredClone(entry.resource);
    eachReference(resource, (holder) => {
      const ref = holder.reference;
      if (fullUrls.has(ref)) {
        holder.reference = fullUrls.get(ref);
        return;
      }
      if (ref.startsWith('urn:')) {
        throw new FhirError(400, 'not-found',
            `reference ${ref} is not the fullUrl of any entry`, `Bundle.entry[${i}].resource`);
      }
      if (ref.startsWith('#') || /^https?:/.test(ref)) return;
      const [refType, refId] = ref.split('/');
      const inTransaction = [...fullUrls.values()].includes(ref);
      if (!inTransaction && !(store.has(refType) && store.get(refType).has(refId))) {
        throw new FhirError(400, 'not-found',
            `reference ${ref} resolves to no resource`, `Bundle.entry[${i}].resource`);
      }
    });
    const previous = typeStore(plan.type).get(plan.id);
    const version = previous ? Number(previous.meta.versionId) + 1 : 1;
    resource.id = plan.id;
    resource.meta = { ...(resource.meta || {}), versionId: String(version), lastUpdated: now };
    writes.push({ plan, resource });
  });
  // Commit: nothing above has touched the store.
  for (const { plan, resource } of writes) {
    typeStore(plan.type).set(plan.id, resource);
  }
  nextId += plans.filter((p) => p.assigns).length;
  stats.committed += 1;
  return {
    resourceType: 'Bundle',
    id: randomUUID(),
    type: 'transaction-response',
    entry: plans.map((plan) => {
      const stored = typeStore(plan.type).get(plan.id);
      const result = {
        response: {
          status: plan.status,
          location: `${plan.type}/${plan.id}/_history/${stored.meta.versionId}`,
          etag: `W/"${stored.meta.versionId}"`,
          lastModified: stored.meta.lastUpdated,
        },
      };
      if (!minimal) result.resource = stored;
      return result;
    }),
  };
}

function searchset(resources) {
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    total: resources.length,
    entry: resources.map((r) => ({ fullUrl: `${r.resourceType}/${r.id}`, resource: r })),
  };
}

// readBody reads the whole body; past `limit` bytes (0: none) the bytes are
// drained, not kept.
function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (!limit || size <= limit) chunks.push(c);
    });
    req.on('end', () => resolve({ text: Buffer.concat(chunks).toString('utf8'), size }));
    req.on('error', reject);
  });
}

function handleAdmin(req, res, path, body) {
  if (req.method === 'POST' && path === '/admin/faults') {
    const f = JSON.parse(body.text || '{}');
    if (f.status !== undefined) {
      faults.status = f.status;
      faults.count = f.count ?? 1;
    }
    if (f.hang !== undefined) faults.hang = f.hang;
    if (f.maxBody !== undefined) maxBody = f.maxBody;
    send(res, 200, { faults, maxBody });
    return;
  }
  if (req.method === 'GET' && path === '/admin/stats') {
    const resources = {};
    for (const [type, byId] of store) resources[type] = byId.size;
    send(res, 200, { ...stats, resources });
    return;
  }
  send(res, 404, outcome('not-found', `no admin endpoint ${req.method} ${path}`));
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://localhost');
  const path = url.pathname;
  const admin = path.startsWith('/admin/');
  const body = await readBody(req, admin ? 0 : maxBody);
  if (admin) {
    handleAdmin(req, res, path, body);
    return;
  }
  stats.requests += 1;
  const auth = req.headers.authorization || '';
  const record = {
    method: req.method,
    path,
    requestId: req.headers['x-request-id'] || '',
    idempotencyKey: req.headers['idempotency-key'] || '',
    contentType: req.headers['content-type'] || '',
    accept: req.headers.accept || '',
    prefer: req.headers.prefer || '',
    authorized: !token || auth === `Bearer ${token}`,
    status: 0,
  };
  stats.log.push(record);
  res.on('finish', () => { record.status = res.statusCode; });

  if (faults.hang > 0) {
    faults.hang -= 1;
    hung.add(req.socket);
    req.socket.on('close', () => hung.delete(req.socket));
    return;
  }
  if (faults.count > 0) {
    faults.count -= 1;
    send(res, faults.status, outcome(faults.status >= 500 ? 'transient' : 'processing',
        `injected fault: HTTP ${faults.status}`));
    return;
  }
  if (token && !auth) {
    send(res, 401, outcome('login', 'authentication required: no bearer token'),
        { 'WWW-Authenticate': 'Bearer realm="fhir-test-server"' });
    return;
  }
  if (token && auth !== `Bearer ${token}`) {
    send(res, 401, outcome('login', 'the bearer token is not valid'),
        { 'WWW-Authenticate': 'Bearer realm="fhir-test-server", error="invalid_token"' });
    return;
  }
  if (maxBody && body.size > maxBody) {
    send(res, 413, outcome('too-costly',
        `request body of ${body.size} bytes is over the limit of ${maxBody} bytes`));
    return;
  }
  if (!path.startsWith(base)) {
    send(res, 404, outcome('not-found', `no FHIR endpoint at ${path}`));
    return;
  }
  const rest = path.slice(base.length).replace(/^\/+/, '').replace(/\/+$/, '');
  try {
    if (req.method === 'POST' && rest === '') {
      const type = (req.headers['content-type'] || '').split(';')[0].trim();
      if (type !== 'application/fhir+json' && type !== 'application/json') {
        throw new FhirError(415, 'not-supported', `Content-Type "${type}" is not FHIR JSON`);
      }
      stats.transactions += 1;
      let bundle;
      try {
        bundle = JSON.parse(body.text);
      } catch (e) {
        throw new FhirError(400, 'structure', `the body is not JSON: ${e.message}`);
      }
      const minimal = /return=minimal/.test(req.headers.prefer || '');
      send(res, 200, transaction(bundle, minimal));
      return;
    }
    const [type, id, extra] = rest.split('/');
    if (req.method === 'GET' && typePattern.test(type || '') && extra === undefined) {
      if (id !== undefined) {
        const found = typeStore(type).get(id);
        if (!found) throw new FhirError(404, 'not-found', `${type}/${id} does not exist`);
        send(res, 200, found);
      } else if (url.search) {
        send(res, 200, searchset(search(type, parseIdentifierSearch(url.search.slice(1)))));
      } else {
        send(res, 200, searchset([...typeStore(type).values()]));
      }
      return;
    }
    throw new FhirError(404, 'not-supported', `${req.method} ${path} is not supported`);
  } catch (e) {
    if (e instanceof FhirError) {
      fail(res, e);
    } else {
      send(res, 500, outcome('exception', `server error: ${e.message}`));
    }
  }
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((e) => {
    if (!res.headersSent) send(res, 500, outcome('exception', String(e)));
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`fhir-test-server listening on 127.0.0.1:${server.address().port}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    for (const socket of hung) socket.destroy();
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}

// Interop tests of ipsrtd through an independent gRPC stack: @grpc/grpc-js
// with @grpc/proto-loader, reading the public .proto files at run time. No
// code generated for (or shared with) the C++ server is used.
//
// Environment:
//   IPSRTD_BIN        path of the ipsrtd binary under test (required)
//   IPSRT_SOURCE_DIR  repository root, for proto/ and workflows/ (defaults to
//                     two directories above this file)
//
// Each run starts the real server on 127.0.0.1 with a free port and its own
// temporary configuration and SQLite database, and removes them afterwards.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SOURCE_DIR = path.resolve(
  process.env.IPSRT_SOURCE_DIR || path.join(HERE, '..', '..'));
const IPSRTD_BIN = process.env.IPSRTD_BIN;

const STARTUP_TIMEOUT_MS = 30_000;
const SHUTDOWN_TIMEOUT_MS = 20_000;
const CALL_TIMEOUT_MS = 15_000;
const MAX_RECEIVE_BYTES = 1024 * 1024;

const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

// ---------------------------------------------------------------------------
// Protos

function loadProtos() {
  const ipsrt = protoLoader.loadSync(
    [
      'ipsrt/v1/diagnostics.proto',
      'ipsrt/v1/workflow.proto',
      'ipsrt/v1/enrollment.proto',
    ],
    { ...LOADER_OPTIONS, includeDirs: [path.join(SOURCE_DIR, 'proto')] });
  // The repository's copy of the standard health proto (the CLI uses it
  // too); the server's health service is gRPC's own.
  const health = protoLoader.loadSync('grpc/health/v1/health.proto', {
    ...LOADER_OPTIONS,
    includeDirs: [path.join(SOURCE_DIR, 'proto')],
  });
  const reflection = protoLoader.loadSync(
    'grpc/reflection/v1alpha/reflection.proto',
    { ...LOADER_OPTIONS, includeDirs: [path.join(HERE, 'proto')] });
  return {
    ipsrt: grpc.loadPackageDefinition(ipsrt).ipsrt.v1,
    health: grpc.loadPackageDefinition(health).grpc.health.v1,
    reflection:
      grpc.loadPackageDefinition(reflection).grpc.reflection.v1alpha,
  };
}

// ---------------------------------------------------------------------------
// Server process

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function writeConfig(dir) {
  const configPath = path.join(dir, 'ipsrtd.yaml');
  // Double-quoted YAML scalars; JSON string syntax is valid for them.
  const yaml = [
    '# Written by tests/interop for one test run.',
    'server:',
    '  listen: "127.0.0.1:0"',
    `  max_receive_message_bytes: ${MAX_RECEIVE_BYTES}`,
    '  shutdown_grace: 5s',
    'store:',
    '  kind: sqlite',
    '  sqlite:',
    '    path: "data/ipsrt.db"', // relative: resolved against this file
    'workflows:',
    '  directories:',
    `    - ${JSON.stringify(path.join(SOURCE_DIR, 'workflows'))}`,
    'logging:',
    '  level: info',
    'plugins:',
    '  - path: libipsrt_core_instruments.so',
    '',
  ].join('\n');
  fs.writeFileSync(configPath, yaml);
  return configPath;
}

// Starts ipsrtd and resolves once the port file names the bound port.
async function startServer(dir, configPath) {
  const portFile = path.join(dir, 'port');
  fs.rmSync(portFile, { force: true });
  const proc = spawn(
    IPSRTD_BIN,
    [
      `--config=${configPath}`,
      '--listen=127.0.0.1:0',
      `--port_file=${portFile}`,
    ],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const server = { proc, port: 0, log: '', exit: null };
  proc.stdout.on('data', (d) => { server.log += d; });
  proc.stderr.on('data', (d) => { server.log += d; });
  server.exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      server.exit = { code, signal };
      resolve(server.exit);
    });
    proc.on('error', (err) => {
      server.exit = { code: null, signal: null, error: err };
      resolve(server.exit);
    });
  });

  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    if (server.exit) {
      throw new Error(
        `ipsrtd exited before serving: ${JSON.stringify(server.exit)}\n` +
        server.log);
    }
    let text = '';
    try {
      text = fs.readFileSync(portFile, 'utf8');
    } catch (err) {
      if (err.code !== 'ENOENT') throw err;
    }
    const port = Number.parseInt(text.trim(), 10);
    if (Number.isInteger(port) && port > 0) {
      server.port = port;
      return server;
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(
        `ipsrtd wrote no port file within ${STARTUP_TIMEOUT_MS} ms\n` +
        server.log);
    }
    await sleep(50);
  }
}

// Sends SIGTERM and returns the exit status; SIGKILLs after a bounded wait.
async function stopServer(server) {
  if (!server.exit) server.proc.kill('SIGTERM');
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve(null), SHUTDOWN_TIMEOUT_MS);
  });
  const exit = await Promise.race([server.exited, timeout]);
  clearTimeout(timer);
  if (exit === null) {
    server.proc.kill('SIGKILL');
    await server.exited;
    return { code: null, signal: 'SIGKILL', timedOut: true };
  }
  return exit;
}

// ---------------------------------------------------------------------------
// Clients

function makeClients(protos, port) {
  const address = `127.0.0.1:${port}`;
  const creds = grpc.credentials.createInsecure();
  // The client may send more than the server accepts, so that the server's
  // own limit is what is tested.
  const options = {
    'grpc.max_send_message_length': -1,
    'grpc.max_receive_message_length': -1,
  };
  const { ipsrt, health, reflection } = protos;
  return {
    health: new health.Health(address, creds, options),
    reflection: new reflection.ServerReflection(address, creds, options),
    diagnostics: new ipsrt.DiagnosticsService(address, creds, options),
    workflows: new ipsrt.WorkflowService(address, creds, options),
    enrollments: new ipsrt.EnrollmentService(address, creds, options),
  };
}

function closeClients(clients) {
  if (!clients) return;
  for (const c of Object.values(clients)) c.close();
}

// Promise wrapper of a unary call with a deadline.
function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](
      request,
      new grpc.Metadata(),
      { deadline: new Date(Date.now() + CALL_TIMEOUT_MS) },
      (err, response) => (err ? reject(err) : resolve(response)));
  });
}

// Asserts that `promise` fails with `code` and a message matching `pattern`
// (a RegExp, or a string the message must contain).
async function expectStatus(promise, code, pattern) {
  await assert.rejects(promise, (err) => {
    const name = (c) => `${grpc.status[c]} (${c})`;
    assert.equal(
      err.code, code,
      `status ${name(err.code)}, want ${name(code)}: ${err.details}`);
    if (pattern instanceof RegExp) {
      assert.match(err.details, pattern);
    } else if (pattern !== undefined) {
      assert.ok(
        err.details.includes(pattern),
        `message ${JSON.stringify(err.details)} lacks ` +
        JSON.stringify(pattern));
    }
    return true;
  });
}

let requestCounter = 0;
function requestId(prefix = 'req') {
  requestCounter += 1;
  return `interop-${prefix}-${process.pid}-${requestCounter}`;
}

function enrollmentRequest(overrides = {}) {
  return {
    parent: 'tenants/t1',
    request_id: requestId('create'),
    patient_ref: 'Patient/interop-1',
    workflow_id: 'ipsrt-standard',
    workflow_version: 0,
    time_zone: 'Europe/London',
    clinician_ref: 'Practitioner/42',
    labels: { site: 'interop' },
    ...overrides,
  };
}

// ---------------------------------------------------------------------------

describe('ipsrtd through @grpc/grpc-js', () => {
  let protos;
  let tmpDir;
  let configPath;
  let server;
  let clients;
  // Set by the CreateEnrollment test; read by later ones.
  let created;

  before(async () => {
    assert.ok(IPSRTD_BIN, 'set IPSRTD_BIN to the ipsrtd binary under test');
    assert.ok(fs.existsSync(IPSRTD_BIN), `no ipsrtd at ${IPSRTD_BIN}`);
    protos = loadProtos();
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipsrt-interop-'));
    fs.mkdirSync(path.join(tmpDir, 'data'));
    configPath = writeConfig(tmpDir);
    server = await startServer(tmpDir, configPath);
    clients = makeClients(protos, server.port);
  });

  after(async () => {
    closeClients(clients);
    try {
      if (server) {
        const exit = await stopServer(server);
        assert.deepEqual(
          exit, { code: 0, signal: null },
          `ipsrtd did not exit 0 on SIGTERM\n${server.log}`);
      }
    } finally {
      if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
    }
  });

  it('reports SERVING on grpc.health.v1.Health/Check', async () => {
    const r = await unary(clients.health, 'Check', { service: '' });
    assert.equal(r.status, 'SERVING');
  });

  it('lists its services through server reflection', async () => {
    const call = clients.reflection.ServerReflectionInfo({
      deadline: Date.now() + 15000,
    });
    const responses = [];
    const done = new Promise((resolve, reject) => {
      call.on('data', (r) => {
        responses.push(r);
        call.end();
      });
      call.on('end', resolve);
      call.on('error', reject);
    });
    call.write({ list_services: '' });
    await done;
    assert.equal(responses.length, 1);
    const names = responses[0].list_services_response.service.map((s) => s.name);
    for (const want of ['ipsrt.v1.EnrollmentService',
      'ipsrt.v1.WorkflowService', 'ipsrt.v1.DiagnosticsService',
      'ipsrt.v1.QuestionnaireService', 'ipsrt.v1.ReminderService',
      'ipsrt.v1.ExportService', 'ipsrt.v1.PluginService',
      'grpc.health.v1.Health']) {
      assert.ok(names.includes(want), `${want} in ${names.join(', ')}`);
    }
  });

  it('echoes the Ping payload bytes', async () => {
    const payload = randomBytes(1000);
    payload[0] = 0; // a NUL must survive too
    const r = await unary(clients.diagnostics, 'Ping', { payload });
    assert.ok(Buffer.isBuffer(r.payload));
    assert.equal(Buffer.compare(r.payload, payload), 0);

    const empty = await unary(clients.diagnostics, 'Ping', {});
    assert.equal(empty.payload.length, 0);
  });

  it('reports the version and store in GetServerInfo', async () => {
    const r = await unary(clients.diagnostics, 'GetServerInfo', {});
    assert.match(r.version, /^\d+\.\d+\.\d+$/);
    assert.equal(r.store_kind, 'sqlite');
  });

  it('lists ipsrt-standard with its four stages in order', async () => {
    const r = await unary(clients.workflows, 'ListWorkflows', {});
    const standard = r.workflows.find((w) => w.id === 'ipsrt-standard');
    assert.ok(standard,
      `ipsrt-standard missing from ${r.workflows.map((w) => w.id)}`);
    assert.ok(standard.version >= 1);
    assert.deepEqual(
      standard.stages.map((s) => s.id),
      ['initial', 'intermediate', 'final', 'maintenance']);
  });

  it('creates, gets, retries and lists an enrollment', async () => {
    const request = enrollmentRequest();
    const e = await unary(clients.enrollments, 'CreateEnrollment', request);
    assert.match(e.name, /^tenants\/t1\/enrollments\/[0-9a-z]{26}$/);
    assert.equal(e.patient_ref, request.patient_ref);
    assert.equal(e.workflow_id, 'ipsrt-standard');
    assert.ok(e.workflow_version >= 1);
    assert.equal(e.time_zone, 'Europe/London');
    assert.equal(e.clinician_ref, 'Practitioner/42');
    assert.equal(e.stage, 'initial');
    assert.equal(e.revision, '1');
    assert.equal(e.state, 'ACTIVE');
    assert.equal(e.session_cadence, 'P1W');
    assert.deepEqual({ ...e.labels }, { site: 'interop' });
    assert.ok(e.create_time && Number(e.create_time.seconds) > 0);
    created = e;

    const got = await unary(clients.enrollments, 'GetEnrollment',
      { name: e.name });
    assert.deepEqual(got, e);

    // A retry with the same request id gets the first result back.
    const retry = await unary(clients.enrollments, 'CreateEnrollment',
      request);
    assert.equal(retry.name, e.name);
    assert.deepEqual(retry, e);

    // ... and created nothing twice.
    const list = await unary(clients.enrollments, 'ListEnrollments',
      { parent: 'tenants/t1', patient_ref: request.patient_ref });
    assert.equal(list.enrollments.length, 1);
    assert.equal(list.enrollments[0].name, e.name);
    assert.equal(list.next_page_token, '');

    // The same request id with another payload is refused.
    await expectStatus(
      unary(clients.enrollments, 'CreateEnrollment',
        { ...request, patient_ref: 'Patient/someone-else' }),
      grpc.status.FAILED_PRECONDITION, 'request_id');
  });

  it('pages through ListEnrollments', async () => {
    const names = [];
    for (let i = 0; i < 7; i += 1) {
      const e = await unary(clients.enrollments, 'CreateEnrollment',
        enrollmentRequest({
          parent: 'tenants/t2',
          patient_ref: `Patient/paging-${i}`,
        }));
      assert.match(e.name, /^tenants\/t2\/enrollments\/[0-9a-z]{26}$/);
      names.push(e.name);
    }

    const sizes = [];
    const seen = [];
    const tokens = [];
    let token = '';
    do {
      const page = await unary(clients.enrollments, 'ListEnrollments',
        { parent: 'tenants/t2', page_size: 3, page_token: token });
      sizes.push(page.enrollments.length);
      seen.push(...page.enrollments.map((e) => e.name));
      token = page.next_page_token;
      if (token) tokens.push(token);
      assert.ok(sizes.length <= 3, 'more pages than expected');
    } while (token);
    assert.deepEqual(sizes, [3, 3, 1]);
    assert.equal(tokens.length, 2);
    assert.equal(new Set(seen).size, seen.length, 'duplicates across pages');
    assert.deepEqual([...seen].sort(), [...names].sort());
    // Oldest first: the creation order.
    assert.deepEqual(seen, names);

    // A token is bound to the filters it was made for.
    await expectStatus(
      unary(clients.enrollments, 'ListEnrollments', {
        parent: 'tenants/t2',
        page_size: 3,
        page_token: tokens[0],
        patient_ref: 'Patient/paging-0',
      }),
      grpc.status.INVALID_ARGUMENT, 'page_token');
  });

  it('refuses invalid CreateEnrollment requests', async () => {
    const create = (overrides) => unary(clients.enrollments,
      'CreateEnrollment', enrollmentRequest(overrides));

    await expectStatus(create({ time_zone: 'Mars/Olympus' }),
      grpc.status.INVALID_ARGUMENT, /^time_zone:/);
    await expectStatus(create({ time_zone: 'localtime' }),
      grpc.status.INVALID_ARGUMENT, /^time_zone:/);
    await expectStatus(create({ patient_ref: '' }),
      grpc.status.INVALID_ARGUMENT, /^patient_ref:/);
    await expectStatus(create({ parent: 'tenant/x' }),
      grpc.status.INVALID_ARGUMENT, /^parent:/);
    await expectStatus(create({ workflow_id: 'no-such-workflow' }),
      grpc.status.NOT_FOUND, 'no-such-workflow');
    await expectStatus(create({ patient_ref: 'P'.repeat(300) }),
      grpc.status.INVALID_ARGUMENT, /^patient_ref:/);
  });

  it('refuses requests over max_receive_message_bytes', async () => {
    const big = 'x'.repeat(MAX_RECEIVE_BYTES + 1024);
    await expectStatus(
      unary(clients.enrollments, 'CreateEnrollment',
        enrollmentRequest({ patient_ref: big })),
      grpc.status.RESOURCE_EXHAUSTED);
    const labels = {};
    for (let i = 0; i < 20; i += 1) labels[`k${i}`] = 'v'.repeat(64 * 1024);
    await expectStatus(
      unary(clients.enrollments, 'CreateEnrollment',
        enrollmentRequest({ labels })),
      grpc.status.RESOURCE_EXHAUSTED);
    // The server still answers afterwards.
    await unary(clients.diagnostics, 'Ping', { payload: Buffer.from('ok') });
  });

  it('returns NOT_FOUND for unknown and other tenants\' enrollments',
    async () => {
      assert.ok(created, 'needs the enrollment created earlier');
      await expectStatus(
        unary(clients.enrollments, 'GetEnrollment',
          { name: `tenants/t1/enrollments/${'0'.repeat(26)}` }),
        grpc.status.NOT_FOUND);
      const id = created.name.split('/').pop();
      await expectStatus(
        unary(clients.enrollments, 'GetEnrollment',
          { name: `tenants/t2/enrollments/${id}` }),
        grpc.status.NOT_FOUND);
    });

  it('returns the enrollment.created event from GetTimeline', async () => {
    assert.ok(created, 'needs the enrollment created earlier');
    const r = await unary(clients.enrollments, 'GetTimeline',
      { name: created.name });
    assert.equal(r.events.length, 1);
    const [event] = r.events;
    assert.equal(event.type, 'enrollment.created');
    assert.equal(event.sequence, '1');
    assert.match(event.hash, /^[0-9a-f]{64}$/);
    // The default loopback config (auth.mode none): the local admin.
    assert.equal(event.actor.subject, 'local');
    assert.equal(event.actor.role, 'admin');
    assert.equal(r.next_page_token, '');
  });

  it('submits a clinician stage change and refuses a stale revision',
    async () => {
      assert.ok(created, 'needs the enrollment created earlier');
      const change = {
        name: created.name,
        request_id: requestId('submit'),
        expected_revision: '1',
        event: {
          stage_change: { to_stage: 'intermediate', reason: 'interop test' },
        },
      };
      const r = await unary(clients.enrollments, 'SubmitEvent', change);
      assert.equal(r.enrollment.stage, 'intermediate');
      assert.equal(r.enrollment.revision, '2');
      assert.equal(r.event.type, 'stage.changed');
      assert.equal(r.event.sequence, '2');
      const moved = r.event.outcomes.find((o) => o.kind === 'STAGE_CHANGED');
      assert.ok(moved, 'a STAGE_CHANGED outcome');
      assert.equal(moved.from, 'initial');
      assert.equal(moved.to, 'intermediate');
      assert.equal(moved.reason, 'clinician');
      // The same request again returns the first result.
      const again = await unary(clients.enrollments, 'SubmitEvent', change);
      assert.deepEqual(again, r);
      await expectStatus(
        unary(clients.enrollments, 'SubmitEvent', {
          ...change,
          request_id: requestId('stale'),
          event: { stage_change: { to_stage: 'final', reason: 'stale' } },
        }),
        grpc.status.ABORTED, /^expected_revision: enrollment .* is at revision 2, not 1/);
      const tl = await unary(clients.enrollments, 'GetTimeline',
        { name: created.name });
      assert.deepEqual(tl.events.map((e) => e.type),
        ['enrollment.created', 'stage.changed']);
      created = r.enrollment;
    });

  it('keeps enrollments across a SIGTERM restart', async () => {
    assert.ok(created, 'needs the enrollment created earlier');
    closeClients(clients);
    clients = null;
    const exit = await stopServer(server);
    assert.deepEqual(exit, { code: 0, signal: null },
      `ipsrtd did not exit 0 on SIGTERM\n${server.log}`);
    server = null;

    server = await startServer(tmpDir, configPath);
    clients = makeClients(protos, server.port);
    const got = await unary(clients.enrollments, 'GetEnrollment',
      { name: created.name });
    assert.deepEqual(got, created);
    const timeline = await unary(clients.enrollments, 'GetTimeline',
      { name: created.name });
    assert.equal(timeline.events.length, 2);
  });
});

#!/usr/bin/env node
// An executable questionnaire plugin in Node.js (docs/executable-plugins.md):
// no SDK, only the installed .proto files and @grpc/grpc-js.
//
//   plugins:
//     - path: /usr/bin/node
//       transport: out_of_process
//       args: [/opt/ipsrt-plugins/sleep_check.cjs]
//
// It serves ipsrt.plugin.v1.Plugin and grpc.health.v1.Health on a unix
// socket in $IPSRT_PLUGIN_SOCKET_DIR and prints the handshake line. The
// .proto files are looked up in $IPSRT_PROTO_DIR (default: the installed
// <prefix>/share/ipsrt/proto beside this engine).
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const protoDir = process.env.IPSRT_PROTO_DIR || '/usr/local/share/ipsrt/proto';
const socketDir = process.env.IPSRT_PLUGIN_SOCKET_DIR;
if (!socketDir || process.env.IPSRT_PLUGIN_PROTOCOL !== '1') {
  console.error('sleep_check: start me from ipsrtd (IPSRT_PLUGIN_SOCKET_DIR, ' +
                'IPSRT_PLUGIN_PROTOCOL=1)');
  process.exit(2);
}

const definition = protoLoader.loadSync(
    ['ipsrt/plugin/v1/plugin.proto', 'grpc/health/v1/health.proto'],
    {keepCase: true, longs: String, enums: String, defaults: true,
     includeDirs: [protoDir]});
const loaded = grpc.loadPackageDefinition(definition);

const ID = 'node-sleep-check';
const INSTRUMENT = {
  id: ID,
  version: 1,
  title: 'Sleep check (Node.js example)',
  items: [
    {id: 'hours', text: 'Hours slept last night, rounded', required: true,
     scored: true},
    {id: 'rested', text: 'Woke rested (0 no, 1 yes)', required: true,
     scored: true},
  ],
};

function unimplemented(name) {
  return (call, callback) => callback({
    code: grpc.status.UNIMPLEMENTED,
    details: `${name} is not implemented by this plugin`,
  });
}

const plugin = {
  Describe: (call, callback) => callback(null, {
    name: ID, version: '1.0.0', kinds: ['QUESTIONNAIRE'],
    summary: 'Example executable plugin in Node.js',
  }),
  Configure: (call, callback) => {
    const fields = Object.keys((call.request.config || {}).fields || {});
    if (fields.length > 0) {
      return callback({code: grpc.status.INVALID_ARGUMENT,
                       details: `config.${fields[0]}: this plugin takes no ` +
                                'configuration'});
    }
    callback(null, {});
  },
  ListInstruments: (call, callback) =>
      callback(null, {instruments: [INSTRUMENT]}),
  ScoreResponse: (call, callback) => {
    const answers = (call.request.response || {}).answers || {};
    for (const item of INSTRUMENT.items) {
      if (!(item.id in answers)) {
        return callback({code: grpc.status.INVALID_ARGUMENT,
                         details: `answers["${item.id}"]: is required`});
      }
    }
    const hours = Number(answers.hours);
    const rested = Number(answers.rested);
    if (hours < 0 || hours > 24 || (rested !== 0 && rested !== 1)) {
      return callback({code: grpc.status.INVALID_ARGUMENT,
                       details: 'answers: hours is 0..24 and rested 0 or 1'});
    }
    callback(null, {
      scores: {[`${ID}.total`]: hours + rested},
      band: hours < 6 ? 'short' : 'enough',
      flags: hours < 4 ? [`${ID}.very_short`] : [],
    });
  },
  DeliverReminder: unimplemented('DeliverReminder'),
  PlanReminders: unimplemented('PlanReminders'),
  RenderExport: unimplemented('RenderExport'),
  DeliverExport: unimplemented('DeliverExport'),
};

const health = {
  Check: (call, callback) => callback(null, {status: 'SERVING'}),
  Watch: (call) => {
    call.write({status: 'SERVING'});
  },
};

const server = new grpc.Server();
server.addService(loaded.ipsrt.plugin.v1.Plugin.service, plugin);
server.addService(loaded.grpc.health.v1.Health.service, health);
const address = 'unix:' + path.join(socketDir, 'plugin.sock');
server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) {
    console.error(`sleep_check: cannot listen on ${address}: ${err.message}`);
    process.exit(1);
  }
  // The handshake: the one line ipsrtd reads from stdout.
  process.stdout.write(`IPSRT_PLUGIN|1|${address}\n`);
});

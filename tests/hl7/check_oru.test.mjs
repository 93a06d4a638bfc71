// Reads the hl7v2-oru plugin's renderings back with an independent HL7 v2
// parser (node-hl7-client) and compares every message with the engine's
// recorded events: the expectations below are derived from the
// RenderExportRequest (events, scores, instruments) and the plugin config
// that ipsrt_hl7_tests wrote beside each rendering, never from the
// plugin's code.
//
// Run by ctest after ipsrt_hl7_tests (fixture hl7_renderings) with
// IPSRT_HL7_OUT_DIR set; `npm ci` in this directory installs the parser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileBatch } from 'node-hl7-client';

const LOINC = 'http://loinc.org';
const SNOMED = 'http://snomed.info/sct';
const LOCAL = 'urn:ipsrt:instruments';

function v2System(system) {
  if (system === LOINC) return 'LN';
  if (system === SNOMED) return 'SCT';
  if (system === LOCAL) return '99IPSRT';
  return 'L';
}

// RFC 3339 (protobuf JSON) -> v2 DTM in UTC to the second.
function dtm(rfc3339) {
  const d = new Date(rfc3339);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}` +
      `${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}` +
      `${p(d.getUTCSeconds())}+0000`;
}

function load(name) {
  const dir = process.env.IPSRT_HL7_OUT_DIR;
  assert.ok(dir, 'IPSRT_HL7_OUT_DIR is not set (run through ctest)');
  const base = join(dir, name);
  assert.ok(existsSync(`${base}.hl7`),
            `${base}.hl7 is missing: ipsrt_hl7_tests writes it`);
  return {
    request: JSON.parse(readFileSync(`${base}.request.json`, 'utf8')),
    config: JSON.parse(readFileSync(`${base}.config.json`, 'utf8')),
    text: readFileSync(`${base}.hl7`, 'utf8'),
  };
}

// What one event should become: the panel, and the observations in order
// as [value type, code, text, system, value].
function expectedReport(request, event) {
  const p = event.payload;
  const qr = p.questionnaire_response;
  const id = qr ? qr.questionnaire_id : (p.srm_diary_day.instrument || 'srm5');
  const instrument = request.instruments.find((q) => q.id === id);
  if (!instrument) throw new Error(`no instrument ${id} in the request`);
  const scores = event.scores || {};
  const observations = [];
  const code = (coding, fallback, text) => coding && coding.code ?
      [coding.code, coding.display || text, v2System(coding.system)] :
      [fallback, text, '99IPSRT'];
  let time;
  let total;
  if (qr) {
    time = dtm(qr.authored_time || event.record_time);
    for (const item of instrument.items) {
      const answer = (qr.answers || {})[item.id];
      if (answer === undefined) continue;
      // The engine's recorded item score where it keeps one (scored
      // items), else the answer value (PHQ-9 item 10).
      const recorded = scores[`${id}.item${item.id}`];
      observations.push(['NM',
        ...code(item.code, `${id}.${item.id}`, item.text),
        recorded !== undefined ? recorded : answer]);
    }
    total = `${id}.total`;
  } else {
    const day = p.srm_diary_day;
    time = day.local_date.replaceAll('-', '');
    for (const item of instrument.items) {
      const a = (day.activities || []).find((x) => x.activity === item.id);
      if (!a || !a.local_time) continue;
      observations.push(['TM', ...code(item.code, `srm.${item.id}`, item.text),
        a.local_time.replace(':', '')]);
    }
    observations.push(['NM', 'srm.mood', 'Mood rating (-5 to +5)', '99IPSRT',
      day.mood || 0]);
    total = 'srm.score';
  }
  if (scores[total] !== undefined) {
    observations.push(['NM', ...code(instrument.total_code, total,
      `${instrument.title} total`), scores[total]]);
  }
  return {
    panel: code(instrument.panel_code, instrument.id, instrument.title),
    time,
    observations,
  };
}

// readable is what the parser read, or a marker when the parser throws
// (it does for a component that is not there in a malformed segment).
function readable(read) {
  try {
    return read();
  } catch (e) {
    return `<unreadable: ${e.message}>`;
  }
}

// checkExport returns every difference between the rendering and what the
// request says, as readable lines; [] when they agree.
export function checkExport({ request, config, text }) {
  const problems = [];
  const expect = (what, actual, wanted) => {
    if (actual !== wanted) {
      problems.push(`${what}: ${JSON.stringify(actual)} != ` +
                    `${JSON.stringify(wanted)}`);
    }
  };
  if (!text.endsWith('FTS|1\r')) {
    problems.push('the file does not end with the segment FTS|1 and its CR');
  }
  // node-hl7-client's FileBatch.get() trips over the empty line after the
  // final segment terminator, so it reads the text without it.
  let file;
  let messages;
  try {
    file = new FileBatch({ text: text.replace(/\r$/, '') });
    messages = file.messages();
  } catch (e) {
    problems.push(`the parser refused the file: ${e.message}`);
    return problems;
  }
  const reports = request.events.filter(
      (e) => e.payload.questionnaire_response || e.payload.srm_diary_day);
  expect('FHS-3', file.get('FHS.3').toString(),
         config.sending_application || 'IPSRT');
  expect('FHS-4', file.get('FHS.4').toString(), config.sending_facility);
  expect('BTS-1', file.get('BTS.1').toString(), String(reports.length));
  expect('message count', messages.length, reports.length);
  if (messages.length !== reports.length) return problems;

  const controlIds = new Set();
  messages.forEach((m, i) => {
    const at = `message ${i + 1} (event ${reports[i].sequence})`;
    const f = (path) => readable(() => m.get(path).toString());
    expect(`${at} MSH-9`, [f('MSH.9.1'), f('MSH.9.2'), f('MSH.9.3')].join(' '),
           'ORU R01 ORU_R01');
    expect(`${at} MSH-12`, f('MSH.12'), '2.5.1');
    expect(`${at} MSH-3`, f('MSH.3'), config.sending_application || 'IPSRT');
    expect(`${at} MSH-4`, f('MSH.4'), config.sending_facility);
    expect(`${at} MSH-5`, f('MSH.5'), config.receiving_application || '');
    expect(`${at} MSH-7`, f('MSH.7'), request.export_time ?
        dtm(request.export_time) : dtm(reports[i].record_time));
    const control = f('MSH.10');
    if (!/^[0-9a-f]{20}$/.test(control) || controlIds.has(control)) {
      problems.push(`${at} MSH-10: ${control} is not a new 20-digit id`);
    }
    controlIds.add(control);
    const pid3 = expectedPid3(request.enrollment.patient_ref, config);
    expect(`${at} PID-3.1`, f('PID.3.1'), pid3.id);
    expect(`${at} PID-3.4`, f('PID.3.4.1'), pid3.authority);
    expect(`${at} PID-3.5`, f('PID.3.5'), pid3.type);
    // PID-5 (required in v2.5.1): the documented placeholder, a name of
    // type U (unspecified) and nothing else.
    expect(`${at} PID-5.1`, f('PID.5.1'), '');
    expect(`${at} PID-5.7`, f('PID.5.7'), 'U');

    const want = expectedReport(request, reports[i]);
    expect(`${at} OBR-4`, [f('OBR.4.1'), f('OBR.4.2'), f('OBR.4.3')].join('^'),
           want.panel.join('^'));
    expect(`${at} OBR-7`, f('OBR.7'), want.time);
    expect(`${at} OBR-25`, f('OBR.25'), 'F');
    const obx = m.get('OBX').toArray();
    expect(`${at} OBX count`, obx.length, want.observations.length);
    obx.forEach((s, k) => {
      const o = want.observations[k];
      if (!o) return;
      // Segment.get() resolves 'OBX.n' paths only from the message, so a
      // repeated segment's fields are read with read(['n', 'component']).
      const g = (path) => readable(() => {
        const node = s.read(path.split('.').slice(1));
        return node ? node.toString() : '';
      });
      const where = `${at} OBX ${k + 1}`;
      expect(`${where} OBX-1`, g('OBX.1'), String(k + 1));
      expect(`${where} OBX-2`, g('OBX.2'), o[0]);
      expect(`${where} OBX-3`,
             [g('OBX.3.1'), g('OBX.3.2'), g('OBX.3.3')].join('^'),
             o.slice(1, 4).join('^'));
      const value = o[0] === 'NM' ? Number(g('OBX.5')) : g('OBX.5');
      expect(`${where} OBX-5`, value, o[4]);
      expect(`${where} OBX-11`, g('OBX.11'), 'F');
      expect(`${where} OBX-14`, g('OBX.14'), want.time);
    });
  });
  return problems;
}

// The PID-3 the plugin's README promises: the first patient_identifiers
// mapping whose prefix the reference starts with, else the reference with
// the plugin's assigning authority.
function expectedPid3(ref, config) {
  for (const m of config.patient_identifiers || []) {
    if (ref.startsWith(m.prefix) && ref.length > m.prefix.length) {
      return { id: ref.slice(m.prefix.length),
               authority: m.assigning_authority,
               type: m.identifier_type || 'MR' };
    }
  }
  return { id: ref, authority: config.assigning_authority,
           type: config.identifier_type || 'MR' };
}

// ---- the renderings of ipsrt_hl7_tests

test('standard course: every message matches the recorded events', () => {
  const fixture = load('standard-course');
  assert.deepEqual(checkExport(fixture), []);
  // Not only self-consistent: PHQ-9 travels with its LOINC codes.
  const messages = new FileBatch({ text: fixture.text.replace(/\r$/, '') })
      .messages();
  const phq9 = messages.filter((m) => m.get('OBR.4.1').toString() === '44249-1');
  assert.equal(phq9.length, 11);
  const first = phq9[0];
  assert.equal(first.get('OBR.4.2').toString(),
               'PHQ-9 quick depression assessment panel');
  assert.equal(first.get('OBR.4.3').toString(), 'LN');
  const obx = first.get('OBX').toArray();
  assert.equal(obx.length, 10);  // 9 items + total
  assert.equal(obx[9].read(['3', '1']).toString(), '44261-6');
  assert.equal(obx[9].read(['3', '3']).toString(), 'LN');
  assert.equal(obx[9].read(['5']).toString(), '5');
});

test('escapes: delimiters and line breaks decode back to the original', () => {
  const fixture = load('escapes');
  assert.deepEqual(checkExport(fixture), []);
  const [m] = new FileBatch({ text: fixture.text.replace(/\r$/, '') })
      .messages()
      .filter((x) => x.get('OBR.4.1').toString() === '44249-1');
  assert.equal(m.get('PID.3.1').toString(), 'MRN|0042^A~B\\C&D');
  assert.equal(m.get('PID.3.4.1').toString(), 'AUTH&1.2^X');
  assert.equal(m.get('MSH.4').toString(),
               'St Elsewhere | Psychiatry ^ Mood & Rhythm ~ Unit \\ 2\r\n' +
               'North wing');
  assert.equal(m.get('OBR.4.2').toString(), 'PHQ-9 \\ panel');
  assert.equal(m.get('OBX').toArray()[0].read(['3', '2']).toString(),
               'Interest | pleasure ^ joy & fun ~ play \\ rest\nsecond line');
});

test('SQLite-stored course: the events and scores the engine recorded', () => {
  const fixture = load('sqlite-course');
  assert.deepEqual(checkExport(fixture), []);
  assert.equal(new FileBatch({ text: fixture.text.replace(/\r$/, '') })
      .messages().length, 16);
});

test('SRM week: diary times, mood and the weekly score', () => {
  const fixture = load('srm-week');
  assert.deepEqual(checkExport(fixture), []);
  const messages = new FileBatch({ text: fixture.text.replace(/\r$/, '') })
      .messages();
  const last = messages[messages.length - 1].get('OBX').toArray();
  assert.equal(last[last.length - 1].read(['3', '1']).toString(),
               'srm.score');
});

test('mapped MRN: PID-3 is the mapped identifier, not the reference', () => {
  const fixture = load('mapped-mrn');
  assert.deepEqual(checkExport(fixture), []);
  const [m] = new FileBatch({ text: fixture.text.replace(/\r$/, '') })
      .messages();
  assert.equal(m.get('PID.3.1').toString(), '0042');
  assert.equal(m.get('PID.3.4.1').toString(), 'STELSEWHERE');
});

// ---- the check itself can fail: each mutation is caught

test('negative: the check reports a changed, dropped or unescaped value', () => {
  const fixture = load('standard-course');
  const mutate = (from, to) => {
    assert.ok(fixture.text.includes(from), `fixture has ${from}`);
    return checkExport({ ...fixture, text: fixture.text.replace(from, to) });
  };
  const has = (problems, text) => assert.ok(
      problems.some((p) => p.includes(text)),
      `expected a problem containing ${text}, got ${problems.join('; ')}`);

  // A total that differs from the recorded score.
  has(mutate('|44261-6^PHQ-9 total score^LN||5|',
             '|44261-6^PHQ-9 total score^LN||6|'), 'OBX 10 OBX-5: 6 != 5');
  // A dropped item.
  const item9 = fixture.text.match(/OBX\|9\|NM\|44260-8[^\r]*\r/)[0];
  has(mutate(item9, ''), 'OBX count: 9 != 10');
  // Another version, another message type.
  has(mutate('|P|2.5.1|', '|P|2.3|'), 'MSH-12: "2.3" != "2.5.1"');
  has(mutate('|ORU^R01^ORU_R01|', '|ADT^A01^ADT_A01|'),
      'MSH-9: "ADT A01 ADT_A01" != "ORU R01 ORU_R01"');
  // A panel coded in the wrong system.
  has(mutate('|44249-1^PHQ-9 quick depression assessment panel^LN|',
             '|44249-1^PHQ-9 quick depression assessment panel^L|'),
      'OBR-4: "44249-1^PHQ-9 quick depression assessment panel^L"');
  // A lost message (the batch trailer no longer matches).
  const lastMsh = fixture.text.lastIndexOf('MSH|');
  const bts = fixture.text.indexOf('BTS|');
  has(checkExport({ ...fixture,
                    text: fixture.text.slice(0, lastMsh) +
                          fixture.text.slice(bts) }),
      'message count: 15 != 16');
  // A truncated file.
  has(checkExport({ ...fixture, text: fixture.text.replace(/FTS\|1\r$/, '') }),
      'does not end with the segment FTS|1');

  const escapes = load('escapes');
  // Delimiters written raw instead of escaped split the identifier.
  const raw = checkExport({ ...escapes,
    text: escapes.text.replaceAll('MRN\\F\\0042\\S\\A\\R\\B\\E\\C\\T\\D',
                                  'MRN|0042^A~B\\C&D') });
  has(raw, 'PID-3.1: "MRN" != "MRN|0042^A~B\\\\C&D"');
  // \.br\ is a formatting command, not an escape a reader decodes in ST.
  const br = checkExport({ ...escapes,
    text: escapes.text.replaceAll('\\X0D\\\\X0A\\', '\\.br\\') });
  has(br, 'MSH-4');
});

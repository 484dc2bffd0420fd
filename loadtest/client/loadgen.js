'use strict';
// A lean load generator: many raw Socket.IO v5 / Engine.IO v4 websocket clients in one Node process, driven by
// JSON commands on stdin, answering with one JSON line each on stdout. It offers permessage-deflate as browsers
// do (unless told not to). Latency is receive time minus the `ts` (Unix ns) the publisher put in the payload.
//
// Commands:
//   {"cmd":"connect","url":"http://127.0.0.1:8000","targets":[{"ns":"/users/u1","auth":{...}}],"rate":2000,
//    "deflate":true}                       -> {"ev":"connected","ok":n,"failed":n,"seconds":s,"errors":{...}}
//   {"cmd":"subscribe","room":"trend:p1"}  -> {"ev":"subscribed","ok":n,"failed":n}   (sockets on /public)
//   {"cmd":"window"}                       -> {"ev":"window","received":n,"p50":ms,"p99":ms,"max":ms,"cpu_us":n,
//                                              "rss":bytes,"open":n}  (since the previous window)
//   {"cmd":"check","expected":{"<ns>":count}} -> {"ev":"check","lost":n,"duplicated":n,"out_of_order":n,"resyncs":n}
//   {"cmd":"reconnect","url":"…","resume":true,"rate":2000} -> drops every socket and connects again, with
//                                              last_event_id when resume is true; -> {"ev":"connected",…}
//   {"cmd":"caught_up","expected":{"<ns>":count},"timeoutMs":60000} -> {"ev":"caught_up","seconds":s,"done":bool}
//   {"cmd":"close"}                        -> {"ev":"closed"} and exit
const WebSocket = require('ws');
const readline = require('readline');
const { performance } = require('perf_hooks');

const now = () => performance.timeOrigin + performance.now(); // wall clock, ms with sub-ms precision
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

class Client {
  constructor(ns, auth) {
    this.ns = ns;
    this.auth = auth;
    this.ws = null;
    this.connected = false;
    this.count = 0;
    this.lastId = null;
    this.lastKey = null;
    this.duplicated = 0;
    this.outOfOrder = 0;
    this.resyncs = 0;
    this.ackId = 0;
    this.acks = new Map();
  }
}

const clients = [];
const RETRY_ROUNDS = 5;
let latencies = [];
let received = 0;
let cpuMark = process.cpuUsage();

function idKey(id) {
  const a = id.indexOf('-');
  const b = id.indexOf('-', a + 1);
  return [Number(id.slice(0, a)), Number(id.slice(a + 1, b))];
}

function onEvent(client, text) {
  // text: 42<ns>,["event",{envelope}]
  received += 1;
  if (text.indexOf('cartsnitch.resync') !== -1 && text.indexOf('"event_type":"cartsnitch.resync"') !== -1) {
    client.resyncs += 1;
    return;
  }
  const t = text.indexOf('"ts":');
  if (t !== -1) {
    let end = t + 5;
    while (end < text.length && text.charCodeAt(end) >= 48 && text.charCodeAt(end) <= 57) end += 1;
    const ts = Number(text.slice(t + 5, end)) / 1e6;
    latencies.push(now() - ts);
  }
  const i = text.indexOf('"id":"');
  if (i !== -1) {
    const id = text.slice(i + 6, text.indexOf('"', i + 6));
    const key = idKey(id);
    if (client.lastKey) {
      const cmp = key[0] - client.lastKey[0] || key[1] - client.lastKey[1];
      if (cmp === 0) { client.duplicated += 1; return; }
      if (cmp < 0) { client.outOfOrder += 1; return; }
    }
    client.lastId = id;
    client.lastKey = key;
  }
  client.count += 1;
}

function open(client, url, deflate, resume) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws') + '/socket.io/?EIO=4&transport=websocket', {
      perMessageDeflate: deflate,
    });
    client.ws = ws;
    let settled = false;
    const done = (ok, why) => { if (!settled) { settled = true; resolve([ok, why]); } };
    ws.on('message', (data) => {
      const text = data.toString();
      const kind = text.charCodeAt(0);
      if (kind === 52) { // '4' message
        const sub = text.charCodeAt(1);
        if (sub === 50) { onEvent(client, text); return; } // '2' event
        if (sub === 51) { // '3' ack: 43<ns>,<id>[data]
          const comma = text.indexOf(',');
          let j = comma + 1;
          while (text.charCodeAt(j) >= 48 && text.charCodeAt(j) <= 57) j += 1;
          const id = Number(text.slice(comma + 1, j));
          const cb = client.acks.get(id);
          if (cb) { client.acks.delete(id); cb(JSON.parse(text.slice(j))[0]); }
          return;
        }
        if (sub === 48) { client.connected = true; done(true); return; } // '0' connect ack
        if (sub === 52) { done(false, 'refused'); ws.close(); return; } // '4' connect error
        return;
      }
      if (kind === 50) { ws.send('3'); return; } // ping -> pong
      if (kind === 48) { // open
        const auth = Object.assign({}, client.auth);
        if (resume && client.lastId) auth.last_event_id = client.lastId;
        ws.send('40' + client.ns + ',' + JSON.stringify(auth));
      }
    });
    ws.on('error', (err) => done(false, err.code || 'error'));
    ws.on('close', () => { client.connected = false; done(false, 'closed'); });
  });
}

async function connectAll(batch, url, deflate, rate, resume) {
  const started = now();
  const interval = 1000 / Math.max(1, rate);
  const pending = [];
  const errors = {};
  let ok = 0;
  let failed = 0;
  for (let k = 0; k < batch.length; k++) {
    const due = started + k * interval;
    const wait = due - now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(open(batch[k], url, deflate, resume).then(([good, why]) => {
      if (good) ok += 1; else { failed += 1; errors[why] = (errors[why] || 0) + 1; }
    }));
  }
  await Promise.all(pending);
  // Like a real client, retry the ones that failed (refused or reset by an overloaded accept queue), with backoff.
  let retried = 0;
  for (let round = 1; round <= RETRY_ROUNDS && failed > 0; round++) {
    await new Promise((r) => setTimeout(r, 500 * round));
    const again = batch.filter((c) => !c.connected);
    failed = 0;
    retried += again.length;
    await Promise.all(again.map((c, k) => new Promise((r) => setTimeout(r, k * interval)).then(() =>
      open(c, url, deflate, resume).then(([good, why]) => {
        if (good) ok += 1; else { failed += 1; errors[why] = (errors[why] || 0) + 1; }
      }))));
  }
  return { ev: 'connected', ok, failed, retried, seconds: (now() - started) / 1000, errors };
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

function emitWithAck(client, event, data) {
  return new Promise((resolve) => {
    client.ackId += 1;
    client.acks.set(client.ackId, resolve);
    client.ws.send('42' + client.ns + ',' + client.ackId + JSON.stringify([event, data]));
  });
}

async function handle(msg) {
  if (msg.cmd === 'connect') {
    const batch = msg.targets.map((t) => new Client(t.ns, t.auth || {}));
    clients.push(...batch);
    out(await connectAll(batch, msg.url, msg.deflate !== false, msg.rate || 2000, false));
  } else if (msg.cmd === 'subscribe') {
    let ok = 0;
    let failed = 0;
    await Promise.all(clients.filter((c) => c.connected).map(async (c) => {
      const ack = await emitWithAck(c, 'subscribe', { room: msg.room });
      if (ack && ack.ok) ok += 1; else failed += 1;
    }));
    out({ ev: 'subscribed', ok, failed });
  } else if (msg.cmd === 'window') {
    const sorted = latencies.sort((a, b) => a - b);
    const cpu = process.cpuUsage(cpuMark);
    cpuMark = process.cpuUsage();
    out({
      ev: 'window', received, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99),
      max: sorted.length ? sorted[sorted.length - 1] : null, cpu_us: cpu.user + cpu.system,
      rss: process.memoryUsage().rss, open: clients.filter((c) => c.connected).length,
    });
    latencies = [];
    received = 0;
  } else if (msg.cmd === 'check') {
    let lost = 0;
    let extra = 0;
    for (const c of clients) {
      const want = msg.expected[c.ns];
      if (want === undefined) continue;
      if (c.count < want) lost += want - c.count; else extra += c.count - want;
    }
    out({
      ev: 'check', lost, extra, duplicated: clients.reduce((s, c) => s + c.duplicated, 0),
      out_of_order: clients.reduce((s, c) => s + c.outOfOrder, 0),
      resyncs: clients.reduce((s, c) => s + c.resyncs, 0),
    });
  } else if (msg.cmd === 'reconnect') {
    for (const c of clients) { c.acks.clear(); if (c.ws) c.ws.terminate(); c.connected = false; }
    out(await connectAll(clients, msg.url, msg.deflate !== false, msg.rate || 2000, msg.resume !== false));
  } else if (msg.cmd === 'caught_up') {
    const started = now();
    const deadline = started + (msg.timeoutMs || 60000);
    let done = false;
    while (now() < deadline) {
      done = clients.every((c) => msg.expected[c.ns] === undefined || c.count >= msg.expected[c.ns]);
      if (done) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    out({ ev: 'caught_up', seconds: (now() - started) / 1000, done });
  } else if (msg.cmd === 'close') {
    for (const c of clients) if (c.ws) c.ws.terminate();
    out({ ev: 'closed' });
    setTimeout(() => process.exit(0), 50);
  } else {
    out({ ev: 'error', message: 'unknown command ' + msg.cmd });
  }
}

let queue = Promise.resolve();
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  const msg = JSON.parse(line);
  queue = queue.then(() => handle(msg)).catch((err) => out({ ev: 'error', message: String(err && err.stack) }));
});

// Drives the official Socket.IO JavaScript client for the Python test suite. One JSON line per thing seen:
//   {"type":"connect"} | {"type":"connect_error","message":…,"data":…} | {"type":"event","name":…,"args":[…]}
//   {"type":"ack","data":…} | {"type":"disconnect","reason":…} | {"type":"done"}
// Usage: node client.js '<json options>'  with options {url, namespace, auth, transports, events, timeoutMs, emit}
'use strict';
const { io } = require('socket.io-client');

const options = JSON.parse(process.argv[2]);
const out = (line) => process.stdout.write(JSON.stringify(line) + '\n');
const socket = io(options.url + options.namespace, {
  auth: options.auth || {},
  transports: options.transports || ['polling', 'websocket'],
  reconnection: false,
  timeout: 5000,
});
let received = 0;
const finish = (code) => {
  out({ type: 'done', received });
  socket.close();
  setTimeout(() => process.exit(code), 50);
};
const timer = setTimeout(() => finish(received >= (options.events || 0) ? 0 : 2), options.timeoutMs || 10000);

socket.on('connect', () => {
  out({ type: 'connect', transport: socket.io.engine.transport.name });
  socket.io.engine.on('upgrade', (transport) => out({ type: 'upgrade', transport: transport.name }));
  if (options.emit) {
    socket.emit(options.emit.event, options.emit.data, (reply) => out({ type: 'ack', data: reply }));
  }
});
socket.on('connect_error', (err) => {
  out({ type: 'connect_error', message: err.message, data: err.data || null });
  clearTimeout(timer);
  finish(1);
});
socket.on('disconnect', (reason) => out({ type: 'disconnect', reason }));
socket.onAny((name, ...args) => {
  out({ type: 'event', name, args });
  received += 1;
  if (options.events && received >= options.events) {
    clearTimeout(timer);
    finish(0);
  }
});

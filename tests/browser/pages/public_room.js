// Connects the official socket.io-client to the hub's /public namespace from this (other) origin, subscribes to
// one room and records what happens in window.results for the test to read.
// Query: ?hub=<hub URL>&room=<room>[&transports=polling,websocket]
"use strict";

const params = new URLSearchParams(location.search);
const transports = params.get("transports") ? params.get("transports").split(",") : ["polling", "websocket"];
const results = { connected: false, transport: null, ack: null, events: [], errors: [] };
window.results = results;
const log = (line) => {
  document.getElementById("log").textContent += `${line}\n`;
};

const socket = io(`${params.get("hub")}/public`, { transports, reconnection: false, timeout: 5000 });
socket.on("connect", () => {
  results.connected = true;
  results.transport = socket.io.engine.transport.name;
  socket.io.engine.on("upgrade", (transport) => {
    results.transport = transport.name;
    log(`upgraded to ${transport.name}`);
  });
  log(`connected (${results.transport})`);
  socket.emit("subscribe", { room: params.get("room") }, (ack) => {
    results.ack = ack;
    log(`subscribe ack: ${JSON.stringify(ack).slice(0, 200)}`);
  });
});
socket.on("connect_error", (error) => {
  results.errors.push(String(error && error.message));
  log(`connect_error: ${error && error.message}`);
});
socket.on("cartsnitch.prices.updated", (envelope) => {
  results.events.push(envelope);
  log(`event ${envelope.id}: ${JSON.stringify(envelope.payload).slice(0, 200)}`);
});

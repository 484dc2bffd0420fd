// A web app on another origin than the hub, written the way a browser developer would: fetch for REST, the
// official socket.io-client for the live namespaces, EventSource for the SSE streams. The tests drive it through
// window.app (every function returns plain JSON) and read what it shows: #user, #socket and one <li> per event in
// #events ("<event_type> <status or price>").
// Query: ?hub=<hub URL>
"use strict";

const hub = new URLSearchParams(location.search).get("hub");
const state = {
  token: null,
  userId: null,
  socket: null,
  events: [],
  connects: 0,
  disconnects: [],
  connectErrors: [],
  handshakes: [],
  pings: 0,
  transports: [],
  upgrades: [],
  streams: {},
};
window.state = state;

const log = (line) => {
  document.getElementById("log").textContent += `${line}\n`;
};

function show(envelope) {
  const item = document.createElement("li");
  const payload = envelope.payload || {};
  const detail = payload.status || (payload.regular_price !== undefined ? String(payload.regular_price) : "");
  item.textContent = `${envelope.event_type} ${detail}`.trim();
  item.dataset.id = envelope.id || "";
  document.getElementById("events").append(item);
}

async function answer(response) {
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  return { status: response.status, type: response.type, headers: Object.fromEntries(response.headers), body };
}

// A call with the access token (or, with credentials: "include", the hub's cookie); a CORS refusal is
// {status: 0, error} since the page cannot read the response, and so is a "no-cors" answer ({status: 0, type:
// "opaque"}).
async function api(method, path, { body, bearer = true, credentials = "same-origin", mode = "cors" } = {}) {
  const headers = {};
  if (bearer && state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    const response = await fetch(hub + path, {
      method,
      headers,
      credentials,
      mode,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return await answer(response);
  } catch (error) {
    return { status: 0, error: String(error) };
  }
}

async function login(email, password) {
  const response = await api("POST", "/auth/login", { body: { email, password }, bearer: false });
  if (response.status !== 200) return response;
  state.token = response.body.access_token;
  const me = await api("GET", "/auth/me");
  state.userId = me.body.id;
  document.getElementById("user").textContent = me.body.email;
  log(`signed in as ${me.body.email}`);
  return { status: 200, userId: state.userId };
}

function useToken(token, userId) {
  state.token = token;
  state.userId = userId;
}

function record(envelope) {
  state.events.push(envelope);
  show(envelope);
  log(`event ${envelope.id || "-"} ${envelope.event_type}: ${JSON.stringify(envelope.payload).slice(0, 160)}`);
}

// Connects the official client to a namespace (the user's by default) and resolves on connect or connect_error.
function connect({ transports = ["polling", "websocket"], lastEventId = null, namespace = null } = {}) {
  const auth = { token: state.token };
  if (lastEventId) auth.last_event_id = lastEventId;
  const socket = io(hub + (namespace || `/users/${state.userId}`), {
    auth,
    transports,
    reconnection: false,
    forceNew: true,
    timeout: 5000,
  });
  state.socket = socket;
  socket.io.engine.on("handshake", (handshake) => state.handshakes.push(handshake));
  socket.io.on("ping", () => {
    state.pings += 1;
  });
  socket.onAny((eventType, envelope) => record(envelope));
  socket.on("disconnect", (reason) => {
    state.disconnects.push(reason);
    document.getElementById("socket").textContent = "closed";
    log(`disconnected: ${reason}`);
  });
  return new Promise((resolve) => {
    socket.on("connect", () => {
      state.connects += 1;
      const engine = socket.io.engine;
      state.transports.push(engine.transport.name);
      engine.on("upgrade", (transport) => state.upgrades.push(transport.name));
      document.getElementById("socket").textContent = `connected (${engine.transport.name})`;
      log(`connected over ${engine.transport.name}`);
      resolve({ ok: true, engineId: engine.id, transport: engine.transport.name, handshake: state.handshakes.at(-1) });
    });
    socket.on("connect_error", (error) => {
      const refusal = { message: String(error.message), data: error.data === undefined ? null : error.data };
      state.connectErrors.push(refusal);
      log(`connect_error: ${JSON.stringify(refusal)}`);
      resolve({ ok: false, ...refusal });
    });
  });
}

function disconnect() {
  state.socket.disconnect();
}

function socketState() {
  const engine = state.socket.io.engine;
  return { connected: state.socket.connected, engineId: engine.id, transport: engine.transport.name };
}

function subscribe(room) {
  return state.socket.emitWithAck("subscribe", { room });
}

// Opens an EventSource and resolves once it is open or has failed; named events are recorded per stream.
function openStream(name, url, eventTypes) {
  const source = new EventSource(url);
  const stream = { opened: false, errors: 0, readyState: null, events: [] };
  state.streams[name] = { source, stream };
  for (const eventType of eventTypes) {
    source.addEventListener(eventType, (message) => {
      const data = JSON.parse(message.data);
      stream.events.push({ type: eventType, lastEventId: message.lastEventId, data });
      if (eventType !== "snapshot") record(data);
    });
  }
  return new Promise((resolve) => {
    source.onopen = () => {
      stream.opened = true;
      resolve({ opened: true, readyState: source.readyState });
    };
    source.onerror = () => {
      stream.errors += 1;
      stream.readyState = source.readyState;
      log(`stream ${name}: error (readyState ${source.readyState})`);
      resolve({ opened: stream.opened, readyState: source.readyState });
    };
  });
}

function streamState(name) {
  const { source, stream } = state.streams[name];
  return { ...stream, readyState: source.readyState };
}

function closeStream(name) {
  state.streams[name].source.close();
}

// A form the user is lured into submitting: a top-level POST navigation, cookies and all.
function submitForm(action) {
  const form = document.createElement("form");
  form.method = "POST";
  form.action = hub + action;
  document.body.append(form);
  form.submit();
}

window.app = {
  api,
  login,
  useToken,
  connect,
  disconnect,
  socketState,
  subscribe,
  openStream,
  streamState,
  closeStream,
  submitForm,
  state: () => JSON.parse(JSON.stringify({ ...state, socket: undefined, streams: undefined })),
};

// The CartSnitch public dashboard: plain DOM and inline SVG, no library. Data comes from the hub's public REST
// routes and its public Server-Sent Events stream (/api/v1/public/stream?room=…), which sends a room's snapshot
// first and then every cartsnitch.prices.updated of the room with the fresh snapshot in payload.snapshot.
"use strict";

(() => {
  const API = "/api/v1/public";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const TREND_DAYS = 90;
  const FEED_SIZE = 6;
  const PICKS = 8;
  const SEARCH_DELAY_MS = 250;
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const DEMO_SERVICE = "demo-ticker";
  const RETRY_MS = 2000;
  const MAX_RETRY_MS = 60000;
  const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
  const shortDate = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
  const clock = new Intl.DateTimeFormat("en-US", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const $ = (id) => document.getElementById(id);

  const state = {
    productId: null,
    productName: "",
    trend: null,
    updates: 0,
    changed: null,
    comparison: null,
    inflation: null,
  };
  const storeColors = new Map();

  // --- DOM helpers ----------------------------------------------------------------------------------------

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "className") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function svgEl(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Every store keeps its colour on every chart: the public store list, by name, decides them.
  async function loadStores() {
    try {
      const response = await fetch("/api/v1/stores");
      if (!response.ok) return;
      const stores = await response.json();
      stores.sort((a, b) => a.name.localeCompare(b.name)).forEach((store, i) => storeColors.set(store.id, i % 6));
    } catch {
      // colours are then given in order of appearance
    }
  }

  function colorOf(storeId) {
    if (!storeColors.has(storeId)) storeColors.set(storeId, storeColors.size % 6);
    return `c${storeColors.get(storeId)}`;
  }

  // dates come as YYYY-MM-DD or, where the old gateway's form is kept, YYYY-MM-DDT00:00:00: the day is the first ten
  function dayOf(iso) {
    return iso.slice(0, 10);
  }

  function dayNumber(iso) {
    const [y, m, d] = dayOf(iso).split("-").map(Number);
    return Date.UTC(y, m - 1, d) / 864e5;
  }

  function today() {
    const now = new Date();
    return Date.UTC(now.getFullYear(), now.getMonth(), now.getDate()) / 864e5;
  }

  function pct(value) {
    if (value === null || value === undefined) return "n/a";
    return `${value > 0 ? "+" : ""}${value.toFixed(1)}%`;
  }

  function niceStep(range, count) {
    const raw = range / Math.max(1, count);
    const power = 10 ** Math.floor(Math.log10(raw));
    for (const factor of [1, 2, 2.5, 5, 10]) {
      if (raw <= factor * power) return factor * power;
    }
    return 10 * power;
  }

  // --- live streams ---------------------------------------------------------------------------------------

  // A browser retries an SSE stream by itself after a network error, but gives up on an HTTP error (a 429 or a
  // 503 while the hub restarts): then the stream is reopened here, backing off up to a minute.
  class Stream {
    constructor(room, handlers) {
      this.room = room;
      this.handlers = handlers;
      this.source = null;
      this.timer = 0;
      this.retrying = false;
      this.delay = RETRY_MS;
    }

    open() {
      if (this.source) return;
      clearTimeout(this.timer);
      this.timer = 0;
      this.retrying = false;
      const source = new EventSource(`${API}/stream?room=${encodeURIComponent(this.room)}`);
      source.addEventListener("snapshot", (event) => {
        this.delay = RETRY_MS;
        this.handlers.snapshot(JSON.parse(event.data).snapshot);
        updateStatus();
      });
      source.addEventListener("cartsnitch.prices.updated", (event) => this.handlers.update(JSON.parse(event.data)));
      source.addEventListener("cartsnitch.resync", () => this.reopen());
      source.addEventListener("open", updateStatus);
      source.addEventListener("error", () => {
        if (source.readyState === EventSource.CLOSED && this.source === source) this.refused();
        updateStatus();
      });
      this.source = source;
      updateStatus();
    }

    async refused() {
      this.source.close();
      this.source = null;
      this.retrying = true;
      const gone = this.handlers.gone ? await this.handlers.gone() : false;
      if (gone || !this.retrying) {
        this.retrying = false;
        updateStatus();
        return;
      }
      this.timer = setTimeout(() => {
        this.timer = 0;
        if (!document.hidden) this.open();
      }, this.delay);
      this.delay = Math.min(this.delay * 2, MAX_RETRY_MS);
    }

    close() {
      clearTimeout(this.timer);
      this.timer = 0;
      this.retrying = false;
      if (this.source) this.source.close();
      this.source = null;
    }

    reopen() {
      this.close();
      this.open();
    }

    get state() {
      if (this.retrying) return EventSource.CONNECTING;
      return this.source ? this.source.readyState : EventSource.CLOSED;
    }
  }

  const streams = {
    comparison: new Stream("store-comparison", { snapshot: showComparison, update: (e) => showComparison(e.payload.snapshot) }),
    inflation: new Stream("inflation", { snapshot: showInflation, update: (e) => showInflation(e.payload.snapshot) }),
    trend: null,
  };

  function allStreams() {
    return [streams.trend, streams.comparison, streams.inflation].filter(Boolean);
  }

  function updateStatus() {
    const status = $("status");
    const states = allStreams().map((s) => s.state);
    let label = "live";
    let kind = "live";
    if (document.hidden) {
      label = "paused";
      kind = "paused";
    } else if (states.some((s) => s === EventSource.CONNECTING)) {
      label = status.dataset.state === "live" ? "reconnecting…" : "connecting…";
      kind = "connecting";
    } else if (states.some((s) => s === EventSource.CLOSED)) {
      label = "offline";
      kind = "offline";
    }
    status.dataset.state = kind;
    status.textContent = label;
  }

  // Background tabs give their connections back: a browser allows six per host over HTTP/1.1.
  document.addEventListener("visibilitychange", () => {
    for (const stream of allStreams()) {
      if (document.hidden) stream.close();
      else stream.open();
    }
    updateStatus();
  });

  // --- product selection ----------------------------------------------------------------------------------

  function productFromHash() {
    const match = /(?:^#|&)product=([^&]+)/.exec(location.hash);
    return match && UUID.test(match[1]) ? match[1] : null;
  }

  function selectProduct(id, name) {
    if (!UUID.test(id) || id === state.productId) return;
    state.productId = id;
    state.productName = name || "";
    state.trend = null;
    state.updates = 0;
    state.changed = null;
    if (productFromHash() !== id) history.replaceState(null, "", `#product=${id}`);
    $("trend-title").textContent = name || "Loading prices…";
    $("trend-sub").textContent = "";
    $("feed").replaceChildren(el("li", { className: "empty" }, "Waiting for the next price change…"));
    renderTrend();
    markPicks();
    if (streams.trend) streams.trend.close();
    streams.trend = new Stream(`trend:${id}`, {
      snapshot: (snapshot) => {
        state.trend = snapshot;
        renderTrend();
      },
      update: applyPriceUpdate,
      gone: async () => {
        let status = 0;
        try {
          status = (await fetch(`${API}/trends/${id}?days=1`)).status;
        } catch {
          return false;
        }
        if (status !== 404 || state.productId !== id) return status === 404;
        $("trend-title").textContent = "Product not found";
        state.productId = null;
        const first = state.comparison && state.comparison.products[0];
        if (first && first.product_id !== id) selectProduct(first.product_id, first.product_name);
        return true;
      },
    });
    if (!document.hidden) streams.trend.open();
  }

  function applyPriceUpdate(envelope) {
    const payload = envelope.payload;
    if (payload.product_id !== state.productId) return;
    if (payload.snapshot) {
      state.trend = payload.snapshot;
    } else if (state.trend) {
      // No snapshot (the hub could not compute one): the event's own observation replaces that store's day.
      const price = Math.min(payload.regular_price, payload.sale_price ?? Infinity);
      const points = state.trend.data_points.filter(
        (p) => !(p.store_id === payload.store_id && dayOf(p.date) === payload.observed_date),
      );
      const store = state.trend.data_points.find((p) => p.store_id === payload.store_id);
      points.push({
        date: payload.observed_date,
        price,
        store_id: payload.store_id,
        store_name: store ? store.store_name : payload.store_slug,
      });
      points.sort((a, b) => (a.date < b.date ? -1 : a.date > b.date ? 1 : 0));
      state.trend = { ...state.trend, data_points: points };
    }
    state.updates += 1;
    state.changed = { store: payload.store_id, date: payload.observed_date };
    renderTrend();
    addToFeed(envelope);
  }

  window.addEventListener("hashchange", () => {
    const id = productFromHash();
    if (id) selectProduct(id, "");
  });

  // --- the trend chart ------------------------------------------------------------------------------------

  function seriesOf(snapshot) {
    const byStore = new Map();
    for (const point of snapshot.data_points) {
      let series = byStore.get(point.store_id);
      if (!series) {
        series = { id: point.store_id, name: point.store_name, days: new Map() };
        byStore.set(point.store_id, series);
      }
      series.days.set(dayOf(point.date), point.price);
    }
    return [...byStore.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((s) => ({
        id: s.id,
        name: s.name,
        points: [...s.days].map(([date, price]) => ({ date, t: dayNumber(date), price })).sort((a, b) => a.t - b.t),
      }));
  }

  function chartSize(svg, phoneHeight, height) {
    const width = Math.max(260, Math.round(svg.clientWidth || svg.parentNode.clientWidth || 640));
    const h = width < 520 ? phoneHeight : height;
    svg.setAttribute("viewBox", `0 0 ${width} ${h}`);
    svg.setAttribute("height", String(h));
    return { width, height: h };
  }

  function renderTrend() {
    const svg = $("trend-chart");
    svg.replaceChildren();
    svg.dataset.updates = String(state.updates);
    svg.dataset.product = state.productId || "";
    const legend = $("trend-legend");
    legend.replaceChildren();
    if (!state.trend) {
      svg.dataset.points = "0";
      return;
    }
    state.productName = state.trend.product_name;
    $("trend-title").textContent = state.trend.product_name;
    document.title = `${state.trend.product_name} · CartSnitch live prices`;
    const series = seriesOf(state.trend);
    const points = series.flatMap((s) => s.points);
    svg.dataset.points = String(points.length);
    $("trend-sub").textContent = points.length
      ? `${points.length} observations at ${series.length} ${series.length === 1 ? "store" : "stores"}`
      : "No prices observed in the last 90 days.";
    if (!points.length) return;

    const { width, height } = chartSize(svg, 220, 300);
    const margin = { left: 56, right: 14, top: 12, bottom: 26 };
    const end = Math.max(today(), ...points.map((p) => p.t));
    const start = end - TREND_DAYS;
    let low = Math.min(...points.map((p) => p.price));
    let high = Math.max(...points.map((p) => p.price));
    const pad = Math.max((high - low) * 0.12, 0.1);
    low = Math.max(0, low - pad);
    high += pad;
    const step = niceStep(high - low, 4);
    low = Math.floor(low / step) * step;
    high = Math.ceil(high / step) * step;
    const x = (t) => margin.left + ((t - start) / (end - start)) * (width - margin.left - margin.right);
    const y = (price) => margin.top + (1 - (price - low) / (high - low)) * (height - margin.top - margin.bottom);

    const grid = svgEl("g", { class: "grid" });
    for (let value = low; value <= high + step / 2; value += step) {
      grid.append(svgEl("line", { x1: margin.left, x2: width - margin.right, y1: y(value), y2: y(value) }));
      grid.append(svgEl("text", { x: margin.left - 6, y: y(value) + 4, class: "y-label" }, money.format(value)));
    }
    const ticks = width < 520 ? 3 : 5;
    for (let i = 0; i <= ticks; i += 1) {
      const t = start + Math.round((i * TREND_DAYS) / ticks);
      const label = shortDate.format(new Date(t * 864e5));
      grid.append(svgEl("text", { x: x(t), y: height - 6, class: "x-label" }, label));
    }
    svg.append(grid);

    const latest = [];
    for (const s of series) {
      const color = colorOf(s.id);
      const visible = s.points.filter((p) => p.t >= start);
      if (!visible.length) continue;
      // A shelf price holds until the next observation: a step line, not a slope.
      let d = `M${x(visible[0].t).toFixed(1)},${y(visible[0].price).toFixed(1)}`;
      for (const p of visible.slice(1)) d += `H${x(p.t).toFixed(1)}V${y(p.price).toFixed(1)}`;
      const group = svgEl("g", { class: `series ${color}`, "data-store": s.id });
      group.append(svgEl("path", { d, class: "line", "data-store": s.id }));
      visible.forEach((p, index) => {
        const last = index === visible.length - 1;
        const changed = state.changed && state.changed.store === s.id && state.changed.date === p.date;
        const dot = svgEl("circle", {
          cx: x(p.t).toFixed(1),
          cy: y(p.price).toFixed(1),
          r: last ? 4.5 : 2.2,
          class: `dot${last ? " last" : ""}${changed ? " changed" : ""}`,
        });
        dot.append(svgEl("title", {}, `${s.name} ${shortDate.format(new Date(p.t * 864e5))}: ${money.format(p.price)}`));
        group.append(dot);
      });
      svg.append(group);
      const previous = visible.length > 1 ? visible[visible.length - 2].price : null;
      latest.push({ series: s, color, point: visible[visible.length - 1], previous });
    }

    latest.sort((a, b) => a.point.price - b.point.price);
    latest.forEach((item, index) => {
      const delta = item.previous === null ? 0 : item.point.price - item.previous;
      const changed = state.changed && state.changed.store === item.series.id;
      legend.append(
        el(
          "li",
          { className: `${item.color}${changed ? " changed" : ""}`, dataset: { store: item.series.id, price: String(item.point.price) } },
          el("span", { className: "swatch", "aria-hidden": "true" }),
          el("span", { className: "store" }, item.series.name),
          el("strong", { className: "price" }, money.format(item.point.price)),
          delta ? el("span", { className: delta > 0 ? "delta up" : "delta down" }, `${delta > 0 ? "▲" : "▼"} ${money.format(Math.abs(delta))}`) : null,
          el("span", { className: "seen" }, shortDate.format(new Date(item.point.t * 864e5))),
          index === 0 && latest.length > 1 ? el("span", { className: "badge" }, "cheapest") : null,
        ),
      );
    });
  }

  function addToFeed(envelope) {
    const payload = envelope.payload;
    const feed = $("feed");
    feed.querySelector(".empty")?.remove();
    const onSale = payload.sale_price !== null && payload.sale_price !== undefined && payload.sale_price < payload.regular_price;
    const store = state.trend && state.trend.data_points.find((p) => p.store_id === payload.store_id);
    const when = new Date(envelope.timestamp);
    feed.prepend(
      el(
        "li",
        { className: colorOf(payload.store_id) },
        el("time", { datetime: envelope.timestamp }, clock.format(Number.isNaN(when.getTime()) ? new Date() : when)),
        el("span", { className: "store" }, store ? store.store_name : payload.store_slug),
        el("strong", {}, money.format(onSale ? payload.sale_price : payload.regular_price)),
        onSale ? el("span", { className: "badge sale" }, `sale, was ${money.format(payload.regular_price)}`) : null,
        envelope.service === DEMO_SERVICE ? el("span", { className: "badge demo", title: "simulated by the hub's demo ticker" }, "demo") : null,
      ),
    );
    while (feed.children.length > FEED_SIZE) feed.lastElementChild.remove();
  }

  // --- store comparison -----------------------------------------------------------------------------------

  function showComparison(snapshot) {
    if (!snapshot) return;
    state.comparison = snapshot;
    const bars = $("comparison-bars");
    bars.replaceChildren();
    const totals = snapshot.stores.map((s) => s.basket_total).filter((v) => v !== null);
    const top = Math.max(...totals, 0);
    snapshot.stores.forEach((store, index) => {
      const bar = el("span", { className: "bar" });
      bar.style.width = top && store.basket_total !== null ? `${(store.basket_total / top) * 100}%` : "0";
      bars.append(
        el(
          "li",
          { className: colorOf(store.store_id), dataset: { store: store.store_id } },
          el("span", { className: "store" }, store.store_name),
          el("span", { className: "track" }, bar),
          el("strong", { className: "price" }, store.basket_total === null ? "n/a" : money.format(store.basket_total)),
          el("span", { className: "seen" }, `${store.items_priced} priced`),
          index === 0 && store.basket_total !== null && snapshot.stores.length > 1 ? el("span", { className: "badge" }, "cheapest") : null,
        ),
      );
    });
    $("comparison-sub").textContent = snapshot.basket_product_ids.length
      ? `Latest prices of ${snapshot.basket_product_ids.length} products every store carries, as one basket.`
      : "No product is priced at every store yet.";
    renderPicks();
    if (!state.productId && snapshot.products.length) {
      selectProduct(snapshot.products[0].product_id, snapshot.products[0].product_name);
    }
  }

  function renderPicks() {
    const picks = $("picks");
    picks.replaceChildren();
    for (const product of state.comparison.products.slice(0, PICKS)) {
      const button = el("button", { type: "button", dataset: { product: product.product_id } }, product.product_name);
      button.addEventListener("click", () => selectProduct(product.product_id, product.product_name));
      picks.append(el("li", {}, button));
    }
    markPicks();
  }

  function markPicks() {
    for (const button of $("picks").querySelectorAll("button")) {
      if (button.dataset.product === state.productId) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
  }

  // --- basket index against CPI ---------------------------------------------------------------------------

  function showInflation(snapshot) {
    if (!snapshot) return;
    state.inflation = snapshot;
    renderInflation();
  }

  function renderInflation() {
    const snapshot = state.inflation;
    if (!snapshot) return;
    const months = snapshot.months;
    const cpi = snapshot.cpi;
    const first = months[0] ? months[0].month : "";
    const last = months.length ? months[months.length - 1].month : "";
    $("inflation-summary").replaceChildren(
      el("span", { className: "c-basket" }, `Basket ${pct(snapshot.basket_change_pct)}`),
      " · ",
      el("span", { className: "c-cpi" }, `CPI-U ${cpi.title} ${pct(snapshot.cpi_change_pct)}`),
      ` (${first} to ${last})`,
    );
    $("inflation-source").textContent =
      `Source: ${cpi.source}. Series ${cpi.series_id}, ${cpi.title}, ${cpi.area}, ${cpi.base}, ` +
      `${cpi.seasonally_adjusted ? "seasonally adjusted" : "not seasonally adjusted"}, published ${cpi.first_month} to ${cpi.last_month}` +
      (cpi.missing_months.length ? ` (no value published for ${cpi.missing_months.join(", ")}).` : ".");
    $("inflation-notes").replaceChildren(...snapshot.notes.map((note) => el("li", {}, note)));
    $("inflation-legend").replaceChildren(
      el("li", { className: "c-basket" }, el("span", { className: "swatch" }), "CartSnitch basket index"),
      el("li", { className: "c-cpi" }, el("span", { className: "swatch" }), `CPI-U ${cpi.title}, ${cpi.area}`),
    );

    const svg = $("inflation-chart");
    svg.replaceChildren();
    const values = months.flatMap((m) => [m.basket_index, m.cpi_index]).filter((v) => v !== null);
    if (!values.length) return;
    const { width, height } = chartSize(svg, 180, 200);
    const margin = { left: 44, right: 12, top: 10, bottom: 24 };
    const step = niceStep(Math.max(...values) - Math.min(...values) || 1, 4);
    const low = Math.floor((Math.min(...values) - step / 4) / step) * step;
    const high = Math.ceil((Math.max(...values) + step / 4) / step) * step;
    const x = (i) => margin.left + (i / Math.max(1, months.length - 1)) * (width - margin.left - margin.right);
    const y = (v) => margin.top + (1 - (v - low) / (high - low)) * (height - margin.top - margin.bottom);
    const grid = svgEl("g", { class: "grid" });
    for (let value = low; value <= high + step / 2; value += step) {
      grid.append(svgEl("line", { x1: margin.left, x2: width - margin.right, y1: y(value), y2: y(value) }));
      grid.append(svgEl("text", { x: margin.left - 6, y: y(value) + 4, class: "y-label" }, value.toFixed(step < 1 ? 1 : 0)));
    }
    const every = Math.ceil(months.length / (width < 520 ? 3 : 6));
    const lastIndex = months.length - 1;
    months.forEach((m, i) => {
      if ((i % every === 0 && lastIndex - i >= every / 2) || i === lastIndex) {
        grid.append(svgEl("text", { x: x(i), y: height - 6, class: "x-label" }, m.month));
      }
    });
    svg.append(grid);
    for (const [key, className] of [["cpi_index", "c-cpi"], ["basket_index", "c-basket"]]) {
      // A month without a value breaks the line: nothing is interpolated.
      let d = "";
      let pen = false;
      months.forEach((m, i) => {
        const v = m[key];
        if (v === null) {
          pen = false;
          return;
        }
        d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      });
      const group = svgEl("g", { class: `series ${className}` });
      group.append(svgEl("path", { d, class: "line" }));
      months.forEach((m, i) => {
        if (m[key] !== null) group.append(svgEl("circle", { cx: x(i).toFixed(1), cy: y(m[key]).toFixed(1), r: 2.5, class: "dot" }));
      });
      svg.append(group);
    }
  }

  // --- search ---------------------------------------------------------------------------------------------

  const search = $("search");
  const results = $("results");
  let searchTimer = 0;
  let searchAbort = null;
  let active = -1;

  function closeResults() {
    results.hidden = true;
    search.setAttribute("aria-expanded", "false");
    search.removeAttribute("aria-activedescendant");
    active = -1;
  }

  function highlight(index) {
    const options = [...results.querySelectorAll("[role=option]")];
    if (!options.length) return;
    active = (index + options.length) % options.length;
    options.forEach((option, i) => option.setAttribute("aria-selected", String(i === active)));
    search.setAttribute("aria-activedescendant", options[active].id);
    options[active].scrollIntoView({ block: "nearest" });
  }

  function choose(option) {
    selectProduct(option.dataset.product, option.dataset.name);
    search.value = option.dataset.name;
    closeResults();
  }

  async function runSearch(text) {
    if (searchAbort) searchAbort.abort();
    searchAbort = new AbortController();
    const query = new URLSearchParams({ q: text, limit: "8" });
    let products;
    try {
      const response = await fetch(`${API}/products?${query}`, { signal: searchAbort.signal, cache: "no-cache" });
      if (!response.ok) throw new Error(`search failed: ${response.status}`);
      products = await response.json();
    } catch (error) {
      if (error.name === "AbortError") return;
      results.replaceChildren(el("li", { className: "none" }, "Search is not available right now."));
      results.hidden = false;
      return;
    }
    results.replaceChildren();
    products.forEach((product, i) => {
      const detail = [product.brand, product.category && product.category.replace("_", " ")].filter(Boolean).join(" · ");
      const option = el(
        "li",
        { role: "option", id: `result-${i}`, "aria-selected": "false", dataset: { product: product.id, name: product.name } },
        el("span", { className: "name" }, product.name),
        detail ? el("span", { className: "detail" }, detail) : null,
      );
      option.addEventListener("mousedown", (event) => event.preventDefault());
      option.addEventListener("click", () => choose(option));
      results.append(option);
    });
    if (!products.length) results.append(el("li", { className: "none" }, "No product matches."));
    results.hidden = false;
    search.setAttribute("aria-expanded", "true");
    active = -1;
  }

  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    const text = search.value.trim();
    if (!text) {
      closeResults();
      return;
    }
    searchTimer = setTimeout(() => runSearch(text), SEARCH_DELAY_MS);
  });
  search.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") highlight(active + 1);
    else if (event.key === "ArrowUp") highlight(active - 1);
    else if (event.key === "Escape") closeResults();
    else return;
    event.preventDefault();
  });
  search.addEventListener("blur", closeResults);
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const options = [...results.querySelectorAll("[role=option]")];
    if (options.length) choose(options[Math.max(0, active)]);
  });

  // --- start ----------------------------------------------------------------------------------------------

  let resizeFrame = 0;
  new ResizeObserver(() => {
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(() => {
      renderTrend();
      renderInflation();
    });
  }).observe(document.querySelector("main"));

  loadStores().finally(() => {
    const initial = productFromHash();
    if (initial) selectProduct(initial, "");
    streams.comparison.open();
    streams.inflation.open();
  });
})();

"""The demo page served at ``/``: one self-contained HTML document for a live talk.

Three panels, all talking to the public HTTP API of CONTRACT.md section 2 and nothing
else (inline CSS and vanilla JavaScript, no CDN, so it works offline):

* **Order**: the menu (``GET /api/menu``) with quantities, a customer, pickup or
  delivery (``POST /api/delivery-addresses`` first), then ``POST /api/orders`` with an
  ``Idempotency-Key`` header (kept and reused if the request failed in transit).
* **Your order**: the read model followed over Server-Sent Events
  (``GET /api/orders/{id}/stream``, event ``order``): a progress line of statuses, the
  timeline with times, value and loyalty points, and a Cancel button (409 shown).
* **Behind the counter**: kitchen tickets, delivery jobs and the pickup counter, polled
  every second with their action buttons, and the SMTP sink's mailbox.

Every piece of data goes into the DOM through ``textContent`` (never ``innerHTML``).
"""

HOME = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Plant-Based Pizza</title>
<style>
  :root {
    --bg: #f2f6ee; --panel: #ffffff; --ink: #1f2d1f; --muted: #5d6f5a;
    --green: #2e7d32; --green-dark: #1b5e20; --leaf: #e3efdc; --line: #cfdcc6;
    --tomato: #c0392b; --tomato-bg: #fdecea; --amber: #b7791f; --amber-bg: #fdf3e1;
  }
  * { box-sizing: border-box; }
  body {
    margin: 0; background: var(--bg); color: var(--ink);
    font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  }
  header {
    display: flex; align-items: baseline; gap: 14px; padding: 10px 18px;
    background: var(--green-dark); color: #fff;
  }
  header h1 { margin: 0; font-size: 20px; letter-spacing: .3px; }
  header .tag { color: #c8e6c9; font-size: 13px; }
  header .health { margin-left: auto; font-size: 12px; color: #c8e6c9; }
  .dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%;
         background: #9e9e9e; margin-right: 5px; vertical-align: middle; }
  .dot.ok { background: #66bb6a; } .dot.bad { background: #ef5350; }
  main {
    display: grid; grid-template-columns: 340px minmax(0, 1.15fr) minmax(0, 1fr);
    gap: 14px; padding: 14px 18px; align-items: start;
  }
  section.panel {
    background: var(--panel); border: 1px solid var(--line); border-radius: 10px;
    padding: 12px 14px; min-width: 0;
  }
  h2 { margin: 0 0 8px; font-size: 16px; color: var(--green-dark); }
  h3 { margin: 12px 0 6px; font-size: 13px; text-transform: uppercase;
       letter-spacing: .6px; color: var(--muted); }
  h3 .count { font-weight: normal; text-transform: none; letter-spacing: 0; }
  table.menu { width: 100%; border-collapse: collapse; }
  table.menu td { padding: 3px 2px; border-bottom: 1px solid #eef3ea; }
  table.menu td.price { text-align: right; color: var(--muted); white-space: nowrap;
                        padding-right: 8px; }
  table.menu input { width: 52px; padding: 3px 6px; }
  table.menu tr.chosen td { background: var(--leaf); }
  .total { text-align: right; margin: 6px 2px; font-weight: 600; }
  label { display: block; font-size: 12px; color: var(--muted); margin-top: 6px; }
  input[type=text], input[type=email], input[type=number] {
    width: 100%; padding: 5px 7px; border: 1px solid var(--line); border-radius: 6px;
    font: inherit; color: var(--ink); background: #fff;
  }
  input:focus { outline: 2px solid #81c784; border-color: var(--green); }
  .row { display: flex; gap: 8px; align-items: flex-end; }
  .row > * { flex: 1; min-width: 0; }
  .toggle { display: flex; margin-top: 10px; border: 1px solid var(--green);
            border-radius: 8px; overflow: hidden; }
  .toggle label { flex: 1; margin: 0; text-align: center; padding: 6px; cursor: pointer;
                  color: var(--green-dark); font-size: 14px; }
  .toggle input { display: none; }
  .toggle label.on { background: var(--green); color: #fff; }
  fieldset { border: 1px dashed var(--line); border-radius: 8px; margin: 8px 0 0;
             padding: 4px 10px 10px; }
  fieldset legend { font-size: 12px; color: var(--muted); }
  button {
    font: inherit; border: 1px solid var(--green); background: #fff;
    color: var(--green-dark); border-radius: 6px; padding: 4px 10px; cursor: pointer;
  }
  button:hover:not(:disabled) { background: var(--leaf); }
  button:disabled { opacity: .45; cursor: default; }
  button.primary { background: var(--green); color: #fff; font-weight: 600;
                   padding: 8px 14px; width: 100%; margin-top: 12px; font-size: 15px; }
  button.primary:hover:not(:disabled) { background: var(--green-dark); }
  button.danger { border-color: var(--tomato); color: var(--tomato); }
  button.danger:hover:not(:disabled) { background: var(--tomato-bg); }
  button.small { padding: 2px 8px; font-size: 12px; }
  .link { border: none; background: none; padding: 0; color: var(--green);
          text-decoration: underline; font-size: 12px; }
  .msg { margin-top: 10px; padding: 8px 10px; border-radius: 8px; font-size: 13px; }
  .msg.error { background: var(--tomato-bg); color: #7f1d1d; border: 1px solid #f5c2bd; }
  .msg.ok { background: var(--leaf); color: var(--green-dark); border: 1px solid var(--line); }
  .msg .code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
  .msg ul { margin: 4px 0 0; padding-left: 18px; }
  .mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
  .muted { color: var(--muted); }
  .empty { color: var(--muted); font-style: italic; padding: 6px 0; }
  .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
           background: var(--leaf); color: var(--green-dark); white-space: nowrap; }
  .badge.cancelled { background: var(--tomato-bg); color: var(--tomato); }
  .badge.completed { background: var(--green); color: #fff; }
  .badge.wait { background: var(--amber-bg); color: var(--amber); }
  .summary { display: grid; grid-template-columns: auto 1fr; gap: 2px 12px; margin: 6px 0; }
  .summary dt { color: var(--muted); } .summary dd { margin: 0; }
  .live { font-size: 12px; color: var(--muted); }
  ol.steps { list-style: none; display: flex; padding: 0; margin: 14px 0 6px; }
  ol.steps li { flex: 1; position: relative; text-align: center; font-size: 10.5px;
                color: #9aa79a; padding-top: 22px; min-width: 0; }
  ol.steps li::before { content: ""; position: absolute; top: 6px; left: 50%;
                        width: 14px; height: 14px; margin-left: -7px; border-radius: 50%;
                        background: #fff; border: 2px solid #c5d3bd; z-index: 1; }
  ol.steps li::after { content: ""; position: absolute; top: 12px; left: -50%; width: 100%;
                       height: 3px; background: #dfe8d8; }
  ol.steps li:first-child::after { display: none; }
  ol.steps li.done { color: var(--green-dark); }
  ol.steps li.done::before { background: var(--green); border-color: var(--green); }
  ol.steps li.done::after { background: var(--green); }
  ol.steps li.now { font-weight: 700; }
  ol.steps li.now::before { box-shadow: 0 0 0 4px #c8e6c9; }
  ol.steps li.stop { color: var(--tomato); font-weight: 700; }
  ol.steps li.stop::before { background: var(--tomato); border-color: var(--tomato); }
  ol.steps li.stop::after { background: var(--tomato); }
  ol.steps .t { display: block; font-weight: normal; color: var(--muted); font-size: 10px; }
  table.timeline { width: 100%; border-collapse: collapse; font-size: 13px; }
  table.timeline td { padding: 3px 4px; border-bottom: 1px solid #eef3ea; }
  table.timeline td.time { white-space: nowrap; width: 1%; }
  table.timeline td.delta { text-align: right; color: var(--muted); white-space: nowrap; }
  .points { margin-top: 10px; padding: 8px 10px; border-radius: 8px; background: var(--leaf);
            color: var(--green-dark); font-weight: 600; }
  .mine { display: flex; flex-wrap: wrap; gap: 6px; }
  .mine button.on { background: var(--green); color: #fff; }
  .item { border: 1px solid var(--line); border-radius: 8px; padding: 6px 8px;
          margin-bottom: 6px; display: flex; gap: 8px; align-items: center; }
  .item.followed { border-color: var(--green); box-shadow: 0 0 0 2px #c8e6c9; }
  .item .what { flex: 1; min-width: 0; }
  .item .what div { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .item .acts { display: flex; gap: 4px; align-items: center; flex-shrink: 0; }
  .item input.driver { width: 92px; padding: 2px 6px; font-size: 12px; }
  .counter-grid { display: grid; grid-template-columns: 1fr 1fr; gap: 0 12px; }
  .counter-msg { font-size: 12px; color: var(--tomato); }
  .counter-msg:empty { display: none; }
  details.mail { border: 1px solid var(--line); border-radius: 8px; padding: 5px 8px;
                 margin-bottom: 5px; }
  details.mail summary { cursor: pointer; }
  details.mail pre { white-space: pre-wrap; margin: 6px 0 0; font-size: 12px;
                     background: #f7faf5; padding: 6px; border-radius: 6px; }
  .scroll { max-height: 260px; overflow-y: auto; }
  footer { padding: 4px 18px 16px; font-size: 12px; color: var(--muted); }
  footer a { color: var(--green); margin-right: 14px; }
</style>
</head>
<body>
<header>
  <h1><svg width="18" height="18" viewBox="0 0 24 24" aria-hidden="true"><path fill="#a5d6a7"
    d="M5 19C5 9 11 4 21 3c-1 10-6 16-16 16zm0 0l8-8"/></svg> Plant-Based Pizza</h1>
  <span class="tag">an event-driven pizza company, live</span>
  <span class="health" id="health"><span class="dot"></span>checking&hellip;</span>
  <label for="token" class="tag">token</label>
  <input type="password" id="token" autocomplete="off" style="max-width:14em"
    placeholder="pizza token --role operator"
    title="a bearer token: run `pizza token --role operator` (or customer, kitchen...)">
</header>
<main>
  <section class="panel" id="order-panel">
    <h2>Order</h2>
    <table class="menu"><tbody id="menu"><tr><td class="empty">loading the menu&hellip;</td>
    </tr></tbody></table>
    <div class="total" id="total">Total: &ndash;</div>
    <div class="row">
      <div><label for="customer">Customer id</label><input type="text" id="customer"></div>
      <div style="flex:0 0 auto"><button class="small" id="new-customer" type="button"
        title="a new random customer">new</button></div>
    </div>
    <label for="email">Email</label><input type="email" id="email">
    <div class="toggle" id="fulfilment">
      <label class="on"><input type="radio" name="fulfilment" value="pickup" checked>
        Pickup</label>
      <label><input type="radio" name="fulfilment" value="delivery">Delivery</label>
    </div>
    <fieldset id="address" hidden>
      <legend>Delivery address</legend>
      <label for="line1">Line 1</label><input type="text" id="line1" value="12 Basil Row">
      <label for="line2">Line 2 (optional)</label><input type="text" id="line2">
      <div class="row">
        <div><label for="city">City</label><input type="text" id="city" value="Leeds"></div>
        <div><label for="postcode">Postcode</label>
          <input type="text" id="postcode" value="LS1 4AP"></div>
      </div>
    </fieldset>
    <button class="primary" id="place" type="button">Place order</button>
    <div id="order-msg"></div>
  </section>

  <section class="panel" id="track-panel">
    <h2>Your order <span class="live" id="live"></span></h2>
    <div id="track-empty" class="empty">Place an order: its story appears here as the
      events arrive.</div>
    <div id="track" hidden>
      <dl class="summary">
        <dt>Order</dt><dd class="mono" id="t-id"></dd>
        <dt>Status</dt><dd><span class="badge" id="t-status"></span></dd>
        <dt>Customer</dt><dd id="t-customer"></dd>
        <dt>Fulfilment</dt><dd id="t-fulfilment"></dd>
        <dt>Items</dt><dd id="t-items"></dd>
        <dt>Value</dt><dd id="t-value"></dd>
      </dl>
      <ol class="steps" id="steps"></ol>
      <h3>Timeline</h3>
      <table class="timeline"><tbody id="timeline"></tbody></table>
      <div class="points" id="points" hidden></div>
      <button class="danger" id="cancel" type="button" style="margin-top:10px">
        Cancel order</button>
      <div id="cancel-msg"></div>
    </div>
    <div id="mine-wrap" hidden>
      <h3>Orders placed from this page</h3>
      <div class="mine" id="mine"></div>
    </div>
  </section>

  <section class="panel" id="counter-panel">
    <h2>Behind the counter</h2>
    <div class="counter-msg" id="counter-msg"></div>
    <h3>Kitchen tickets <span class="count" id="kitchen-count"></span></h3>
    <div id="kitchen"></div>
    <div class="counter-grid">
      <div>
        <h3>Delivery jobs</h3>
        <div id="delivery"></div>
      </div>
      <div>
        <h3>Pickup counter</h3>
        <div id="pickup"></div>
      </div>
    </div>
    <h3>Mailbox <span class="count" id="mail-count"></span></h3>
    <div class="scroll" id="mailbox"></div>
  </section>
</main>
<footer>
  <a href="/docs">/docs (OpenAPI)</a>
  <a href="/api/catalog">/api/catalog (event catalog)</a>
  <a href="/asyncapi.json">/asyncapi.json</a>
  <a href="/api/health">/api/health</a>
</footer>

<script>
"use strict";
(function () {
  // ---- small helpers: every text goes in through textContent ----
  const $ = (id) => document.getElementById(id);
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (value !== undefined && value !== null && value !== false) {
        node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const short = (id) => String(id).slice(0, 8);
  const pad = (n, w) => String(n).padStart(w || 2, "0");
  function clock(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return String(iso);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) +
      "." + pad(d.getMilliseconds(), 3);
  }
  function money(amount, currency) {
    try {
      return new Intl.NumberFormat("en-GB", {style: "currency", currency: currency || "GBP"})
        .format(amount);
    } catch (e) { return String(amount) + " " + (currency || ""); }
  }
  function uuid() {
    if (window.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));  // not a secure context
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" +
      h.slice(16, 20) + "-" + h.slice(20);
  }
  function randomWord(n) {
    const abc = "abcdefghjkmnpqrstuvwxyz23456789";
    return Array.from(crypto.getRandomValues(new Uint8Array(n)),
      (x) => abc[x % abc.length]).join("");
  }

  // ---- HTTP: JSON in and out, the CONTRACT error shape made readable ----
  class ApiError extends Error {
    constructor(status, body, method, path) {
      const err = (body && body.error) || {};
      super(err.message || ("HTTP " + status));
      this.status = status; this.code = err.code || "http-" + status;
      this.details = err.details; this.method = method; this.path = path;
    }
  }
  // Signed in with a bearer token pasted from `pizza token` (kept for this tab only).
  const tokenBox = document.getElementById("token");
  tokenBox.value = sessionStorage.getItem("pizza-token") || "";
  tokenBox.addEventListener("change", () => sessionStorage.setItem("pizza-token",
    tokenBox.value.trim()));
  function bearer() {
    const token = tokenBox.value.trim();
    return token ? {Authorization: "Bearer " + token} : {};
  }
  async function api(method, path, body, headers) {
    const init = {method: method, headers: Object.assign({Accept: "application/json"},
      bearer(), headers || {})};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    const text = await res.text();
    let data = null;
    if (text) { try { data = JSON.parse(text); } catch (e) { data = {raw: text}; } }
    if (!res.ok) throw new ApiError(res.status, data, method, path);
    return {status: res.status, data: data, headers: res.headers};
  }
  function detailLines(details) {
    if (details === null || details === undefined) return [];
    if (Array.isArray(details)) {
      return details.map((d) => (d && typeof d === "object" && "problem" in d)
        ? (d.field ? d.field + ": " : "") + d.problem
        : (typeof d === "object" ? JSON.stringify(d) : String(d)));
    }
    if (typeof details === "object") {
      return Object.entries(details).map(([k, v]) =>
        k + ": " + (typeof v === "object" ? JSON.stringify(v) : String(v)));
    }
    return [String(details)];
  }
  function showMessage(box, kind, title, error) {
    box.replaceChildren();
    if (!title && !error) return;
    const msg = el("div", {class: "msg " + kind});
    if (error instanceof ApiError) {
      msg.append(el("div", {},
        el("strong", {text: error.message}), " ",
        el("span", {class: "code", text: "(" + error.status + " " + error.code + ", " +
          error.method + " " + error.path + ")"})));
      const lines = detailLines(error.details);
      if (lines.length) msg.append(el("ul", {}, ...lines.map((l) => el("li", {text: l}))));
    } else if (error) {
      msg.append(el("strong", {text: title || "Request failed"}), " ",
        el("span", {text: String(error.message || error)}));
    } else {
      msg.append(el("span", {text: title}));
    }
    box.append(msg);
  }

  // ---- Order panel ----
  let menu = [];
  const quantities = new Map();
  function newCustomer() {
    const id = "cust-" + randomWord(5);
    $("customer").value = id;
    $("email").value = id + "@example.com";
  }
  function renderTotal() {
    let total = 0, count = 0, currency = "GBP";
    for (const item of menu) {
      const q = quantities.get(item.id) || 0;
      total += q * item.price; count += q; currency = item.currency || currency;
    }
    $("total").textContent = count
      ? "Total: " + money(total, currency) + " (" + count + " item" + (count > 1 ? "s" : "") + ")"
      : "Total: nothing chosen yet";
  }
  async function loadMenu() {
    try {
      menu = (await api("GET", "/api/menu")).data || [];
    } catch (e) {
      $("menu").replaceChildren(el("tr", {}, el("td", {class: "empty",
        text: "Could not load the menu: " + e.message})));
      setTimeout(loadMenu, 2000);
      return;
    }
    $("menu").replaceChildren(...menu.map((item, index) => {
      const input = el("input", {type: "number", min: 0, max: 50, value: index === 0 ? 1 : 0,
        "aria-label": "quantity of " + item.name});
      const row = el("tr", {}, el("td", {text: item.name}),
        el("td", {class: "price", text: money(item.price, item.currency)}), el("td", {}, input));
      const sync = () => {
        const q = Math.max(0, Math.floor(Number(input.value) || 0));
        quantities.set(item.id, q);
        row.classList.toggle("chosen", q > 0);
        renderTotal();
      };
      input.addEventListener("input", sync);
      sync();
      return row;
    }));
  }
  function fulfilment() {
    return document.querySelector("input[name=fulfilment]:checked").value;
  }
  for (const radio of document.querySelectorAll("input[name=fulfilment]")) {
    radio.addEventListener("change", () => {
      for (const r of document.querySelectorAll("input[name=fulfilment]")) {
        r.parentElement.classList.toggle("on", r.checked);
      }
      $("address").hidden = fulfilment() !== "delivery";
    });
  }

  const addressIds = new Map();   // same customer and address: reuse its deliveryId
  let pending = null;             // {body, key}: retried with the same Idempotency-Key
  async function placeOrder() {
    const box = $("order-msg");
    const button = $("place");
    const items = menu.filter((m) => (quantities.get(m.id) || 0) > 0)
      .map((m) => ({menuItemId: m.id, quantity: quantities.get(m.id)}));
    const body = {customerId: $("customer").value.trim(), email: $("email").value.trim(),
      items: items, fulfilment: fulfilment()};
    button.disabled = true;
    showMessage(box, "ok", fulfilment() === "delivery"
      ? "Registering the address, then placing the order\u2026" : "Placing the order\u2026");
    try {
      if (body.fulfilment === "delivery") {
        const address = {customerId: body.customerId, line1: $("line1").value.trim(),
          city: $("city").value.trim(), postcode: $("postcode").value.trim()};
        if ($("line2").value.trim()) address.line2 = $("line2").value.trim();
        const cacheKey = JSON.stringify(address);
        if (!addressIds.has(cacheKey)) {
          const made = await api("POST", "/api/delivery-addresses", address);
          addressIds.set(cacheKey, made.data.deliveryId);
        }
        body.deliveryId = addressIds.get(cacheKey);
      }
      const bodyKey = JSON.stringify(body);
      if (!pending || pending.body !== bodyKey) pending = {body: bodyKey, key: uuid()};
      const res = await api("POST", "/api/orders", body, {"Idempotency-Key": pending.key});
      const key = pending.key;
      pending = null;   // answered: the next click is a new order
      const orderId = res.data.orderId;
      showMessage(box, "ok", res.status + " " + res.data.status + ": order " + short(orderId) +
        " (Location " + (res.headers.get("Location") || "-") + ", Idempotency-Key " +
        short(key) + "\u2026)");
      follow(orderId, body);
    } catch (e) {
      if (e instanceof ApiError) {
        pending = null;
        showMessage(box, "error", "", e);
      } else {
        showMessage(box, "error", "Network error (click again: the same Idempotency-Key is " +
          "reused, so no second order)", e);
      }
    } finally {
      button.disabled = false;
    }
  }

  // ---- Your order: the read model over Server-Sent Events ----
  const STATUS_OF = {
    OrderConfirmed: "confirmed", OrderPreparing: "preparing", OrderPrepared: "prepared",
    OrderOutForDelivery: "out-for-delivery", OrderReadyForCollection: "ready-for-collection",
    OrderDelivered: "delivered", OrderCollected: "collected", OrderCompleted: "completed",
    OrderCancelled: "cancelled",
  };
  const FINAL = new Set(["completed", "cancelled"]);
  const placed = [];        // [{orderId, customerId, fulfilment, acceptedAt}]
  let current = null;       // {orderId, placed, doc}
  let source = null;
  let pointsTimer = null;

  function stepsFor(fulfilmentKind) {
    return fulfilmentKind === "delivery"
      ? ["accepted", "confirmed", "preparing", "prepared", "out-for-delivery", "delivered",
         "completed"]
      : ["accepted", "confirmed", "preparing", "prepared", "ready-for-collection",
         "collected", "completed"];
  }
  function setLive(text) { $("live").textContent = text ? "\u00b7 " + text : ""; }

  function follow(orderId, body) {
    let entry = placed.find((p) => p.orderId === orderId);
    if (!entry) {
      entry = {orderId: orderId, customerId: body.customerId, fulfilment: body.fulfilment,
        acceptedAt: new Date().toISOString()};
      placed.unshift(entry);
    }
    if (source) source.close();
    clearTimeout(pointsTimer);
    current = {orderId: orderId, placed: entry, doc: null, balance: null};
    $("cancel-msg").replaceChildren();
    renderOrder();
    renderMine();
    // EventSource sends no headers: the token goes as access_token (RFC 6750, 2.3).
    source = new EventSource("/api/orders/" + encodeURIComponent(orderId) + "/stream" +
      "?access_token=" + encodeURIComponent(tokenBox.value.trim()));
    const mine = source;
    setLive("connecting\u2026");
    source.onopen = () => { if (mine === source) setLive("live over SSE"); };
    source.addEventListener("order", (event) => {
      if (mine !== source) return;
      let doc;
      try { doc = JSON.parse(event.data); } catch (e) { return; }
      current.doc = doc;
      renderOrder();
      if (FINAL.has(doc.status)) {
        mine.close();
        setLive("stream ended: " + doc.status);
        if (doc.status === "completed") awaitPoints(orderId, 0);
      }
    });
    source.onerror = () => {
      if (mine !== source) return;
      setLive(mine.readyState === EventSource.CLOSED ? "stream closed" : "reconnecting\u2026");
    };
  }
  // The stream ends at "completed"; the loyalty points come just after, so ask a few times.
  async function awaitPoints(orderId, tries) {
    if (!current || current.orderId !== orderId) return;
    try {
      const doc = (await api("GET", "/api/orders/" + encodeURIComponent(orderId))).data;
      if (current.orderId !== orderId) return;
      current.doc = doc;
      if (doc.loyaltyPoints !== undefined) {
        const bal = await api("GET", "/api/loyalty/" + encodeURIComponent(doc.customerId));
        if (current.orderId === orderId) current.balance = bal.data.points;
      }
      renderOrder();
      if (doc.loyaltyPoints !== undefined) return;
    } catch (e) { /* not there yet */ }
    if (tries < 15) pointsTimer = setTimeout(() => awaitPoints(orderId, tries + 1), 1000);
  }

  function renderMine() {
    $("mine-wrap").hidden = placed.length < 2;
    $("mine").replaceChildren(...placed.map((p) => el("button", {
      class: "small" + (current && current.orderId === p.orderId ? " on" : ""),
      type: "button", title: p.orderId, text: short(p.orderId) + " \u00b7 " + p.fulfilment,
      onclick: () => follow(p.orderId, p)})));
  }

  function renderOrder() {
    $("track-empty").hidden = !!current;
    $("track").hidden = !current;
    if (!current) return;
    const doc = current.doc;
    const kind = (doc && doc.fulfilment) || current.placed.fulfilment;
    const status = doc ? doc.status : "accepted";
    $("t-id").textContent = current.orderId;
    const badge = $("t-status");
    badge.textContent = status;
    badge.className = "badge" + (status === "cancelled" ? " cancelled"
      : status === "completed" ? " completed" : doc ? "" : " wait");
    $("t-customer").textContent = (doc && doc.customerId) || current.placed.customerId;
    $("t-fulfilment").textContent = kind;
    $("t-items").textContent = doc ? String(doc.itemCount) : "\u2026";
    $("t-value").textContent = doc ? money(doc.value, doc.currency) : "\u2026";

    // progress line: the time each status was reached, from the timeline
    const reachedAt = {accepted: current.placed.acceptedAt};
    for (const entry of (doc && doc.timeline) || []) {
      const s = STATUS_OF[entry.type];
      if (s && !reachedAt[s]) reachedAt[s] = entry.time;
    }
    const steps = stepsFor(kind);
    let reached = 0;
    steps.forEach((s, i) => { if (reachedAt[s] || s === status) reached = i; });
    const cancelled = status === "cancelled";
    const items = steps.map((s, i) => {
      let cls = i <= reached ? "done" : "";
      if (i === reached && !cancelled) cls += " now";
      return el("li", {class: cls}, s.replace(/-/g, " "),
        reachedAt[s] ? el("span", {class: "t", text: clock(reachedAt[s]).slice(0, 8)}) : null);
    });
    if (cancelled) {
      items.splice(reached + 1, items.length, el("li", {class: "stop"}, "cancelled",
        reachedAt.cancelled ? el("span", {class: "t",
          text: clock(reachedAt.cancelled).slice(0, 8)}) : null));
    }
    $("steps").replaceChildren(...items);

    // timeline: every event the read model has seen, with times
    const timeline = (doc && doc.timeline) || [];
    const start = timeline.length ? new Date(timeline[0].time).getTime() : 0;
    $("timeline").replaceChildren(...timeline.map((entry) => {
        const ms = new Date(entry.time).getTime() - start;
        return el("tr", {}, el("td", {class: "time mono", text: clock(entry.time)}),
          el("td", {text: entry.type}),
          el("td", {class: "delta", text: isNaN(ms) ? "" : "+" + (ms / 1000).toFixed(2) + "s"}));
      }));
    if (!doc) {
      $("timeline").append(el("tr", {}, el("td", {}),
        el("td", {class: "muted", text: "waiting for the query side to see it\u2026"}),
        el("td", {})));
    }

    const points = $("points");
    if (doc && doc.loyaltyPoints !== undefined) {
      points.hidden = false;
      points.textContent = "+" + doc.loyaltyPoints + " loyalty point" +
        (doc.loyaltyPoints === 1 ? "" : "s") +
        (current.balance !== null ? " \u00b7 balance " + current.balance : "");
    } else if (status === "completed") {
      points.hidden = false;
      points.textContent = "Completed: loyalty points on their way\u2026";
    } else {
      points.hidden = true;
    }
    $("cancel").disabled = FINAL.has(status);
  }

  async function cancelOrder() {
    if (!current) return;
    const box = $("cancel-msg");
    try {
      const res = await api("POST", "/api/orders/" + encodeURIComponent(current.orderId) +
        "/cancel");
      showMessage(box, "ok", res.status + ": cancellation accepted, watch the events.");
    } catch (e) {
      showMessage(box, "error", "Could not cancel", e);
    }
  }

  // ---- Behind the counter: polled every second ----
  const driverNames = ["Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Radia"];
  const drivers = new Map();     // orderId -> what is typed in its driver box
  function followed(orderId) { return current && current.orderId === orderId; }
  function counterError(e) {
    const m = e instanceof ApiError ? e.status + " " + e.code + ": " + e.message
      : "network: " + e.message;
    $("counter-msg").textContent = m;
    setTimeout(() => { if ($("counter-msg").textContent === m) $("counter-msg")
      .textContent = ""; }, 5000);
  }
  async function act(button, method, path, body) {
    button.disabled = true;
    try { await api(method, path, body); } catch (e) { counterError(e); }
    refreshCounter();
  }
  // Keyed rendering: rows are rebuilt only when their data changed, so a driver name
  // being typed and an open email stay put across the refresh.
  function sync(container, list, keyOf, build, emptyText) {
    const old = new Map();
    for (const node of container.children) if (node.dataset.key) old.set(node.dataset.key, node);
    const nodes = [];
    for (const item of list) {
      const key = keyOf(item);
      const sig = JSON.stringify(item) + (followed(item.orderId) ? "*" : "");
      let node = old.get(key);
      if (!node || node.dataset.sig !== sig) {
        const fresh = build(item);
        fresh.dataset.key = key; fresh.dataset.sig = sig;
        if (node && node.contains(document.activeElement)) {
          node.dataset.sig = "";   // still being edited: rebuild on a later tick
        } else {
          node = fresh;
        }
      }
      nodes.push(node);
    }
    if (!nodes.length) nodes.push(el("div", {class: "empty", text: emptyText}));
    const same = nodes.length === container.children.length &&
      nodes.every((n, i) => n === container.children[i]);
    if (!same) container.replaceChildren(...nodes);
  }
  function itemBox(orderId, lines, actions) {
    return el("div", {class: "item" + (followed(orderId) ? " followed" : "")},
      el("div", {class: "what"}, ...lines), el("div", {class: "acts"}, ...actions));
  }
  function stageBadge(stage) {
    return el("span", {class: "badge" + (stage === "new" || stage === "awaiting" ||
      stage === "waiting" ? " wait" : ""), text: stage});
  }
  function ticket(t) {
    const what = (t.items || []).map((i) => i.quantity + "\u00d7 " + i.name).join(", ");
    const path = "/api/kitchen/tickets/" + encodeURIComponent(t.orderId);
    const start = el("button", {class: "small", type: "button", text: "start",
      disabled: t.stage !== "new"});
    start.addEventListener("click", () => act(start, "POST", path + "/start"));
    const done = el("button", {class: "small", type: "button", text: "prepared",
      disabled: t.stage !== "preparing"});
    done.addEventListener("click", () => act(done, "POST", path + "/prepared"));
    return itemBox(t.orderId, [
      el("div", {}, el("span", {class: "mono", text: short(t.orderId)}), " ", stageBadge(t.stage),
        " ", el("span", {class: "muted", text: t.fulfilment})),
      el("div", {class: "muted", title: what, text: what})], [start, done]);
  }
  function job(j) {
    const a = j.address || {};
    const where = [a.line1, a.line2, a.city, a.postcode].filter(Boolean).join(", ");
    const path = "/api/delivery/jobs/" + encodeURIComponent(j.orderId);
    const actions = [];
    if (j.stage === "awaiting") {
      if (!drivers.has(j.orderId)) {
        drivers.set(j.orderId, driverNames[Math.floor(Math.random() * driverNames.length)]);
      }
      const input = el("input", {type: "text", class: "driver", value: drivers.get(j.orderId),
        "aria-label": "driver"});
      input.addEventListener("input", () => drivers.set(j.orderId, input.value));
      const go = el("button", {class: "small", type: "button", text: "out"});
      go.title = "out for delivery";
      go.addEventListener("click", () => act(go, "POST", path + "/out-for-delivery",
        {driver: input.value.trim()}));
      actions.push(input, go);
    } else {
      const done = el("button", {class: "small", type: "button", text: "delivered",
        disabled: j.stage !== "out"});
      done.addEventListener("click", () => act(done, "POST", path + "/delivered"));
      actions.push(done);
    }
    return el("div", {class: "item" + (followed(j.orderId) ? " followed" : ""),
      style: "flex-direction:column;align-items:stretch"},
      el("div", {}, el("span", {class: "mono", text: short(j.orderId)}), " ",
        stageBadge(j.stage), j.driver ? el("span", {class: "muted", text: " " + j.driver}) : null),
      el("div", {class: "muted", title: where, text: where,
        style: "overflow:hidden;text-overflow:ellipsis;white-space:nowrap"}),
      el("div", {class: "acts"}, ...actions));
  }
  function pickupOrder(p) {
    const done = el("button", {class: "small", type: "button", text: "collected"});
    done.addEventListener("click", () => act(done, "POST",
      "/api/pickup/orders/" + encodeURIComponent(p.orderId) + "/collected"));
    return itemBox(p.orderId, [el("div", {}, el("span", {class: "mono",
      text: short(p.orderId)}), " ", stageBadge(p.stage))], [done]);
  }
  function mail(m) {
    return el("details", {class: "mail"},
      el("summary", {}, el("span", {class: "mono", text: clock(m.receivedAt).slice(0, 8)}), " ",
        el("strong", {text: m.subject}), el("span", {class: "muted", text: " \u2192 " + m.to})),
      el("div", {class: "muted", text: "from " + m.from}),
      el("pre", {text: m.body}));
  }

  let refreshing = false;
  async function refreshCounter() {
    if (refreshing) return;
    refreshing = true;
    try {
      const [tickets, jobs, pickups, mails] = await Promise.all([
        api("GET", "/api/kitchen/tickets"), api("GET", "/api/delivery/jobs"),
        api("GET", "/api/pickup/orders"), api("GET", "/api/mailbox")]);
      if ($("counter-msg").textContent.startsWith("refresh failed")) {
        $("counter-msg").textContent = "";
      }
      const all = tickets.data || [];
      const open = all.filter((t) => t.stage !== "prepared");
      $("kitchen-count").textContent = "(" + open.length + " open, " +
        (all.length - open.length) + " prepared)";
      sync($("kitchen"), open, (t) => t.orderId, ticket, "No open tickets.");
      sync($("delivery"), jobs.data || [], (j) => j.orderId, job, "No delivery jobs.");
      sync($("pickup"), pickups.data || [], (p) => p.orderId, pickupOrder,
        "Nobody waiting.");
      const inbox = (mails.data || []).slice().reverse();
      $("mail-count").textContent = "(" + inbox.length + ")";
      sync($("mailbox"), inbox.slice(0, 30), (m) => m.receivedAt + m.to + m.subject, mail,
        "No emails yet.");
    } catch (e) {
      $("counter-msg").textContent = "refresh failed: " + e.message;
    } finally {
      refreshing = false;
    }
  }
  async function refreshHealth() {
    const box = $("health");
    try {
      const res = await fetch("/api/health");
      const h = await res.json();
      box.replaceChildren(el("span", {class: "dot " + (h.status === "ok" ? "ok" : "bad")}),
        "health " + h.status + " \u00b7 " + Object.keys(h.services || {}).length +
        " services \u00b7 bus " + (h.nats || "?"));
    } catch (e) {
      box.replaceChildren(el("span", {class: "dot bad"}), "server unreachable");
    }
  }

  // ---- wiring ----
  newCustomer();
  $("new-customer").addEventListener("click", newCustomer);
  $("place").addEventListener("click", placeOrder);
  $("cancel").addEventListener("click", cancelOrder);
  loadMenu();
  refreshCounter();
  refreshHealth();
  setInterval(refreshCounter, 1000);
  setInterval(refreshHealth, 5000);
})();
</script>
</body>
</html>
"""

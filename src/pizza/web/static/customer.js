// The customer's page: the menu, delivery or pickup, placing the order, and their orders.
// An order goes out with an Idempotency-Key kept (in this tab) until the shop accepts it,
// so pressing "Place order" again after a lost answer never makes a second order; a
// delivery address is registered once per address for the same reason. The form keeps
// what was typed whatever goes wrong.
"use strict";
(() => {
  if (!Pizza.allowed) return;

  const $ = (id) => document.getElementById(id);
  const form = $("order-form");
  const KEY = "pizza.orderKey";          // {key}: the pending order's Idempotency-Key
  const ADDRESS = "pizza.deliveryId";    // {address, deliveryId}: the last address registered
  const EMAIL = "pizza.email";
  const MAX_QUANTITY = 50;
  let menu = [];

  // --- who orders -----------------------------------------------------------------
  const session = Pizza.session();
  const isOperator = !!session && session.roles.includes("operator");
  const ownId = session && session.customerId;
  const mayOrder = !!ownId || isOperator;

  function customerId() {
    return ownId || $("customer-id").value.trim();
  }

  if (!mayOrder) {
    $("signed-out").hidden = false;
    if (session) {
      $("signed-out-why").textContent =
        "You are signed in as " + session.roles.join(", ") + "; orders are placed by customers.";
    }
  }
  $("for-customer").hidden = !(isOperator && !ownId);

  // --- the menu -------------------------------------------------------------------
  function quantityOf(item) {
    return $("qty-" + item.id);
  }

  async function loadMenu() {
    const answer = await Pizza.api("GET", "/api/menu");
    if (!answer.ok || !Array.isArray(answer.body)) {
      $("menu-loading").textContent = "We could not load the menu. " + answer.message +
        " Please reload the page.";
      $("menu-loading").className = "error";
      return;
    }
    menu = answer.body;
    $("menu-loading").hidden = true;
    $("menu").replaceChildren(...menu.map((item) => Pizza.el("li", {class: "menu-item"},
      Pizza.el("label", {for: "qty-" + item.id}, item.name),
      Pizza.el("span", {class: "price", id: "price-" + item.id},
               Pizza.money(item.price, item.currency)),
      Pizza.el("input", {id: "qty-" + item.id, name: item.id, type: "number", min: 0,
                         max: MAX_QUANTITY, step: 1, value: 0, inputmode: "numeric",
                         "aria-describedby": "price-" + item.id, class: "quantity"}))));
    showTotal();
  }

  function chosen() {
    return menu.map((item) => ({item, text: quantityOf(item).value.trim()}))
      .filter(({text}) => text !== "" && text !== "0");
  }

  function showTotal() {
    let total = 0;
    for (const {item, text} of chosen()) {
      const quantity = Number(text);
      if (Number.isInteger(quantity) && quantity > 0) total += quantity * item.price;
    }
    $("total").textContent = Pizza.money(total, (menu[0] && menu[0].currency) || "GBP");
  }
  form.addEventListener("input", showTotal);

  // --- delivery or pickup -----------------------------------------------------------
  function fulfilment() {
    const picked = form.querySelector('input[name="fulfilment"]:checked');
    return picked ? picked.value : "delivery";
  }
  function showAddress() {
    const delivery = fulfilment() === "delivery";
    $("address").hidden = !delivery;
  }
  form.addEventListener("change", showAddress);
  showAddress();

  // --- problems, in words ---------------------------------------------------------
  function clearProblems() {
    $("order-error").hidden = true;
    $("order-error").replaceChildren();
    for (const field of form.querySelectorAll("[aria-invalid]")) {
      field.removeAttribute("aria-invalid");
    }
  }

  // problems: [{text, field?, link?}]; the fields named are marked and the first focused.
  function showProblems(problems) {
    const box = $("order-error");
    const intro = problems.length > 1 ? "Please fix these before ordering:" : null;
    box.replaceChildren(
      intro ? Pizza.el("p", {}, intro) : null,
      Pizza.el("ul", {}, problems.map((p) => Pizza.el("li", {}, p.text,
        p.link ? [" ", Pizza.el("a", {href: p.link.href}, p.link.text)] : null))));
    box.hidden = false;
    let first = null;
    for (const p of problems) {
      const field = p.field && $(p.field);
      if (!field) continue;
      field.setAttribute("aria-invalid", "true");
      first = first || field;
    }
    if (first) first.focus();
  }

  const EMAIL_PATTERN = /^[^@\s]+@[^@\s]+\.[^@\s.]+$/;
  const POSTCODE_PATTERN = /^\s*[A-Za-z]{1,2}[0-9][A-Za-z0-9]? ?[0-9][A-Za-z]{2}\s*$/;

  function address() {
    return {line1: $("line1").value.trim(), line2: $("line2").value.trim(),
            city: $("city").value.trim(), postcode: $("postcode").value.trim()};
  }

  // What is wrong with the form before anything is sent, in words.
  function check() {
    const problems = [];
    if (isOperator && !ownId && !customerId()) {
      problems.push({text: "Please enter the customer id you are ordering for.",
                     field: "customer-id"});
    }
    const lines = chosen();
    const bad = lines.find(({text}) => {
      const quantity = Number(text);
      return !Number.isInteger(quantity) || quantity < 0 || quantity > MAX_QUANTITY;
    });
    if (bad) {
      problems.push({text: "Quantities are whole numbers from 0 to " + MAX_QUANTITY +
                     " (look at " + bad.item.name + ").", field: "qty-" + bad.item.id});
    } else if (!lines.length && menu.length) {
      problems.push({text: "Choose something from the menu: set how many you would like.",
                     field: "qty-" + menu[0].id});
    }
    if (!EMAIL_PATTERN.test($("email").value.trim())) {
      problems.push({text: "Please enter your email address, like name@example.com.",
                     field: "email"});
    }
    if (fulfilment() === "delivery") {
      const where = address();
      if (!where.line1) {
        problems.push({text: "Please enter the first line of your address.", field: "line1"});
      }
      if (!where.city) problems.push({text: "Please enter your town or city.", field: "city"});
      if (!POSTCODE_PATTERN.test(where.postcode)) {
        problems.push({text: "Please enter a UK postcode, such as SW1A 1AA.",
                       field: "postcode"});
      }
    }
    return problems;
  }

  // The API's 422 details as the fields of this form, in words.
  const FIELD_WORDS = {
    email: ["email", "Please enter your email address, like name@example.com."],
    customerId: ["customer-id", "Please check the customer id."],
    line1: ["line1", "Please check the first line of your address."],
    line2: ["line2", "Please check the second line of your address."],
    city: ["city", "Please check your town or city."],
    postcode: ["postcode", "Please enter a UK postcode, such as SW1A 1AA."],
    items: [null, "Please check the quantities: whole numbers from 0 to " + MAX_QUANTITY + "."],
  };
  function problemsFrom(answer) {
    const error = (answer.body && answer.body.error) || {};
    if (error.code === "unknown-menu-item") {
      return [{text: "Something in your order is no longer on the menu. " +
                     "Please reload the page and choose again."}];
    }
    if (error.code === "delivery-id-required" || error.code === "unknown-delivery-id") {
      sessionStorage.removeItem(ADDRESS);
      return [{text: "We could not use that delivery address. Please check it and " +
                     "press Place order again.", field: "line1"}];
    }
    if (error.code === "forbidden") {
      return [{text: "You can only order for your own account. Please sign in again."}];
    }
    const details = Array.isArray(error.details) ? error.details : [];
    const found = new Map();
    for (const detail of details) {
      const name = String((detail && detail.field) || "").split(".")[0];
      const words = FIELD_WORDS[name];
      if (words && !found.has(name)) found.set(name, {text: words[1], field: words[0]});
    }
    if (found.size) return [...found.values()];
    return [{text: answer.message || "That did not work. Please try again."}];
  }

  // --- placing the order ------------------------------------------------------------
  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // The key of the order not yet accepted: the same one for every try until it is.
  function pendingKey() {
    let key = sessionStorage.getItem(KEY);
    if (!key) {
      key = uuid();
      sessionStorage.setItem(KEY, key);
    }
    return key;
  }

  // The deliveryId for this address: registered once, reused while the address is the same.
  async function deliveryId(customer) {
    const where = Object.assign({customerId: customer}, address());
    if (!where.line2) delete where.line2;
    const fingerprint = JSON.stringify(where);
    try {
      const kept = JSON.parse(sessionStorage.getItem(ADDRESS) || "null");
      if (kept && kept.address === fingerprint && kept.deliveryId) {
        return {ok: true, deliveryId: kept.deliveryId};
      }
    } catch (_) { /* a bad entry is replaced */ }
    const answer = await Pizza.api("POST", "/api/delivery-addresses", where);
    if (!answer.ok || !answer.body || !answer.body.deliveryId) return {ok: false, answer};
    sessionStorage.setItem(ADDRESS, JSON.stringify({address: fingerprint,
                                                    deliveryId: answer.body.deliveryId}));
    return {ok: true, deliveryId: answer.body.deliveryId};
  }

  async function place() {
    const customer = customerId();
    const body = {
      customerId: customer,
      email: $("email").value.trim(),
      items: chosen().map(({item, text}) => ({menuItemId: item.id, quantity: Number(text)})),
      fulfilment: fulfilment(),
    };
    if (body.fulfilment === "delivery") {
      const registered = await deliveryId(customer);
      if (!registered.ok) return {ok: false, problems: problemsFrom(registered.answer)};
      body.deliveryId = registered.deliveryId;
    }
    const answer = await Pizza.api("POST", "/api/orders", body,
                                   {"Idempotency-Key": pendingKey()});
    if (answer.ok && answer.body && answer.body.orderId) {
      return {ok: true, orderId: answer.body.orderId};
    }
    const error = (answer.body && answer.body.error) || {};
    if (error.code === "idempotency-key-reused") {
      // An earlier try reached the shop after all (its answer was lost), and the form
      // has changed since: that order stands; a new press starts a new order.
      sessionStorage.removeItem(KEY);
      const earlier = error.details && error.details.orderId;
      return {ok: false, problems: [{
        text: "Your earlier order reached us before the connection dropped, so we did " +
              "not place this one as well.",
        link: earlier ? {href: "/orders/" + encodeURIComponent(earlier),
                         text: "See the order we received"} : null}]};
    }
    return {ok: false, problems: problemsFrom(answer)};
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblems();
    if (!mayOrder) {
      showProblems([{text: "Please sign in as a customer to order.",
                     link: {href: "/sign-in?next=/", text: "Sign in to order"}}]);
      return;
    }
    const problems = check();
    if (problems.length) {
      showProblems(problems);
      return;
    }
    const button = $("place-order");
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      const placed = await place();
      if (!placed.ok) {
        showProblems(placed.problems);
        return;
      }
      sessionStorage.removeItem(KEY);
      localStorage.setItem(EMAIL, $("email").value.trim());
      sessionStorage.setItem("pizza.placed", placed.orderId);
      location.assign("/orders/" + encodeURIComponent(placed.orderId));
    } finally {
      button.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });

  // --- your orders ------------------------------------------------------------------
  const STATUS_WORDS = {
    "accepted": "accepted", "confirmed": "confirmed", "preparing": "in the oven",
    "prepared": "ready", "out-for-delivery": "on its way",
    "ready-for-collection": "ready to collect", "delivered": "delivered",
    "collected": "collected", "completed": "completed", "cancelled": "cancelled",
  };

  async function loadOrders() {
    const customer = customerId();
    const list = $("my-orders");
    const note = $("orders-note");
    if (!mayOrder || !customer) {
      list.replaceChildren();
      note.textContent = mayOrder ? "Enter a customer id to see their orders."
        : "Sign in to see your orders.";
      note.hidden = false;
      return;
    }
    const answer = await Pizza.api("GET", "/api/orders?customerId=" +
                                   encodeURIComponent(customer));
    if (!answer.ok || !Array.isArray(answer.body)) {
      note.textContent = "We could not load your orders. " + answer.message;
      note.hidden = false;
      return;
    }
    note.hidden = answer.body.length > 0;
    note.textContent = "No orders yet.";
    list.replaceChildren(...answer.body.map((order) => {
      const first = order.timeline && order.timeline[0];
      const facts = [
        order.value !== undefined ? Pizza.money(order.value, order.currency) : null,
        order.itemCount ? order.itemCount + (order.itemCount === 1 ? " item" : " items") : null,
        order.fulfilment || null,
        first ? Pizza.clock(first.time) : null,
      ].filter(Boolean).join(" · ");
      return Pizza.el("li", {"data-order-id": order.orderId},
        Pizza.el("a", {href: "/orders/" + encodeURIComponent(order.orderId)},
                 "Order " + String(order.orderId).split("-")[0]),
        " ", Pizza.el("span", {class: "badge"}, STATUS_WORDS[order.status] || order.status),
        facts ? Pizza.el("span", {class: "muted"}, " " + facts) : null);
    }));
  }
  $("customer-id").addEventListener("change", loadOrders);

  // --- start ------------------------------------------------------------------------
  const email = localStorage.getItem(EMAIL);
  if (email && !$("email").value) $("email").value = email;
  loadMenu();
  loadOrders();
})();

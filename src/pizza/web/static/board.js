// A staff board (kitchen, delivery, pickup): the work in columns by stage, a button per
// step, live without reloads, and a paged history of finished work.
//
// The page says what it lists in <script type="application/json" id="board-config">. The
// board reads only a small window of its list every POLL_MS while the tab is visible: the
// work still to do (at most LIMIT) and the latest LATELY that finished in the last
// FINISHED_SECONDS; the rest is history, read one page at a time. Each read carries the
// ETag of the last answer, so an unchanged list comes back as a bodiless 304. Rows are
// kept by order id and moved, not redrawn, so focus survives an update.
"use strict";
(() => {
  if (!Pizza.allowed) return;

  const POLL_MS = 1500;
  const FINISHED_SECONDS = 600;
  const LIMIT = 100;
  const LATELY = 8;  // finished items shown on the board at most (the rest: history)
  const HISTORY_PAGE = 10;
  const HISTORY_EVERY = 20;  // polls between refreshes of the history's first page

  const $ = (id) => document.getElementById(id);
  const config = JSON.parse($("board-config").textContent);
  const el = Pizza.el;
  const short = (orderId) => "#" + String(orderId).slice(0, 8);
  const when = (iso) => {  // the time today, the date and time before
    const moment = new Date(iso);
    return moment.toDateString() === new Date().toDateString() ? Pizza.clock(iso)
      : moment.toLocaleString("en-GB", {dateStyle: "short", timeStyle: "short"});
  };
  const byStage = {};
  const rows = new Map();  // orderId -> {item, node, signature}
  let focusAfter = null;   // {orderId}: put focus back on this row once it has moved

  // --- columns ---------------------------------------------------------------------
  const board = $("board");
  for (const column of config.columns) {
    const id = "col-" + column.stage;
    const count = el("span", {class: "badge"}, "0");
    const list = el("ul", {class: "rows"});
    const empty = el("p", {class: "muted empty"}, "Nothing here.");
    const heading = el("h2", {id: id + "-heading", tabindex: "-1"}, column.title, " ", count);
    const section = el("section", {class: "panel column", id, "data-stage": column.stage,
                                   "aria-labelledby": id + "-heading"},
                       heading, list, empty);
    board.append(section);
    byStage[column.stage] = {column, list, count, empty, heading};
  }
  $("history-minutes").textContent = String(FINISHED_SECONDS / 60);

  // --- what a row says ---------------------------------------------------------------
  function describe(item) {
    if (config.kind === "kitchen") {
      return [
        el("ul", {class: "items"}, (item.items || []).map(
          (line) => el("li", null, line.quantity + " × " + line.name))),
        el("p", {class: "meta muted"},
           el("span", {class: "badge"}, item.fulfilment === "pickup" ? "Pickup" : "Delivery"),
           " ordered ", el("time", {datetime: item.createdAt}, when(item.createdAt))),
      ];
    }
    if (config.kind === "delivery") {
      const a = item.address;
      const where = a ? [a.line1, a.line2, a.city, a.postcode].filter(Boolean).join(", ")
                      : "No address on record: ask the shop.";
      return [
        el("p", {class: a ? "address" : "address note"}, where),
        item.driver ? el("p", {class: "meta muted"}, "Driver: " + item.driver) : null,
      ];
    }
    return [];
  }

  const getList = Pizza.getList;

  const signature = (item) => JSON.stringify(item);

  function rowFor(item) {
    const labelId = "order-" + item.orderId;
    const column = byStage[item.stage] && byStage[item.stage].column;
    const actions = (column ? column.actions : []).map((action) =>
      el("button", {type: "button", "aria-describedby": labelId,
                    onclick: (event) => act(item, action, event.currentTarget)},
         action.label));
    return el("li", {class: "row", "data-order-id": item.orderId, "data-stage": item.stage},
              el("h3", {id: labelId, class: "order-id"}, "Order " + short(item.orderId)),
              describe(item),
              actions.length ? el("div", {class: "actions"}, actions) : null);
  }

  // Put every item in its column, in the list's order (oldest first); drop the rest.
  function show(items) {
    const seen = new Set();
    let finishedNow = false;
    for (const item of items) {
      if (!byStage[item.stage]) continue;
      seen.add(item.orderId);
      const known = rows.get(item.orderId);
      const sig = signature(item);
      if (known && known.signature === sig) continue;
      if (item.stage === config.finished) finishedNow = true;
      const node = rowFor(item);
      if (known) {
        const hadFocus = known.node.contains(document.activeElement);
        known.node.replaceWith(node);
        if (hadFocus) focusAfter = {orderId: item.orderId};
      }
      rows.set(item.orderId, {item, node, signature: sig});
    }
    for (const [orderId, row] of rows) {
      if (!seen.has(orderId)) {
        if (row.node.contains(document.activeElement)) {
          byStage[row.item.stage].heading.focus();
        }
        row.node.remove();
        rows.delete(orderId);
      }
    }
    for (const stage of Object.keys(byStage)) {
      const {list, count, empty} = byStage[stage];
      const mine = items.filter((item) => item.stage === stage && rows.has(item.orderId));
      mine.forEach((item, index) => {
        const node = rows.get(item.orderId).node;
        if (list.children[index] !== node) list.insertBefore(node, list.children[index] || null);
      });
      count.textContent = String(mine.length);
      empty.hidden = mine.length > 0;
    }
    if (focusAfter) {
      const row = rows.get(focusAfter.orderId);
      if (row && document.body.contains(row.node)) {
        const target = row.node.querySelector("button") || row.node.querySelector("h3");
        if (target) {
          if (!target.matches("button")) target.setAttribute("tabindex", "-1");
          target.focus();
        }
      }
      focusAfter = null;
    }
    board.setAttribute("aria-busy", "false");
    if (finishedNow && past.page === 0) loadHistory();
  }

  // --- the buttons -------------------------------------------------------------------
  const errorBox = $("board-error");
  function problem(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  function refusal(item, answer) {
    const who = "Order " + short(item.orderId);
    const details = answer.body && answer.body.error && answer.body.error.details;
    const stage = details && details.stage;
    if (answer.status === 409) {
      if (stage === "withdrawn") return who + " was cancelled: it is off the board.";
      return who + " already moved on" + (stage ? " (it is " + stage + " now)" : "") +
             ". The board shows where it is.";
    }
    if (answer.status === 404) return who + " is not on this board (any more).";
    if (answer.status === 403) return "Your account may not move " + config.noun + "s here.";
    return who + ": " + answer.message;
  }

  const driverInput = $("driver");
  if (driverInput) {
    driverInput.value = localStorage.getItem("pizza.driver") || "";
    driverInput.addEventListener("change", () =>
      localStorage.setItem("pizza.driver", driverInput.value.trim()));
  }

  async function act(item, action, button) {
    let body;
    if (action.driver) {
      const driver = driverInput ? driverInput.value.trim() : "";
      if (!driver) {
        problem("Type the driver's name in the Driver box first.");
        if (driverInput) driverInput.focus();
        return;
      }
      localStorage.setItem("pizza.driver", driver);
      body = {driver};
    }
    button.disabled = true;
    const path = config.list + "/" + encodeURIComponent(item.orderId) + "/" + action.path;
    const answer = await Pizza.api("POST", path, body);
    if (answer.ok) {
      problem("");
      Pizza.toast("Order " + short(item.orderId) + ": " + action.done + ".");
      focusAfter = {orderId: item.orderId};
    } else {
      problem(refusal(item, answer));
      button.disabled = false;
    }
    poll(true);
  }

  // --- live updates ------------------------------------------------------------------
  const statusBox = $("board-status");
  function status(text) {
    statusBox.textContent = text;
    statusBox.hidden = !text;
  }

  function nextLink(answer) {
    const link = answer.headers && answer.headers.get("Link");
    const match = link && /<([^>]+)>\s*;\s*rel="next"/.exec(link);
    return match ? match[1] : null;
  }

  // Two small reads: the work still to do (oldest first, as it should be done) and what
  // finished lately (latest first), so finished work never crowds out work to do.
  function boardQueries() {
    const doing = new URLSearchParams({limit: String(LIMIT)});
    for (const stage of config.stages) {
      if (stage !== config.finished) doing.append("stage", stage);
    }
    const lately = new URLSearchParams({stage: config.finished, order: "latest",
                                        finishedWithin: String(FINISHED_SECONDS),
                                        limit: String(LATELY)});
    return [config.list + "?" + doing, config.list + "?" + lately];
  }

  let timer = null;
  let busy = false;
  let polls = 0;
  async function poll(now) {
    clearTimeout(timer);
    if (busy) { timer = setTimeout(poll, 200); return; }
    if (document.hidden && !now) return;  // visibilitychange starts it again
    busy = true;
    try {
      const [doing, lately] = await Promise.all(
        boardQueries().map(getList));
      const answer = doing.ok ? lately : doing;
      if (doing.ok && lately.ok && Array.isArray(doing.body) && Array.isArray(lately.body)) {
        show(doing.body.concat(lately.body));
        status(nextLink(doing)
          ? "Showing the oldest " + LIMIT + "; more are waiting behind them." : "");
        polls += 1;
        if (polls % HISTORY_EVERY === 0 && past.page === 0) loadHistory();
      } else {
        status("Not up to date: " + answer.message + " Trying again…");
      }
    } finally {
      busy = false;
      if (!document.hidden) timer = setTimeout(poll, POLL_MS);
    }
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) poll(true); else clearTimeout(timer);
  });

  // --- history: finished work, a page at a time -----------------------------------------
  const past = {page: 0, urls: [], next: null, asked: 0};
  function historyStart() {
    const query = new URLSearchParams({stage: config.finished, order: "latest",
                                       limit: String(HISTORY_PAGE)});
    return config.list + "?" + query;
  }

  async function loadHistory() {
    const url = past.urls[past.page] || historyStart();
    past.urls[past.page] = url;
    const asked = ++past.asked;
    const answer = await getList(url);
    if (asked !== past.asked) return;  // a later read (another page) answers instead
    const list = $("history");
    if (!answer.ok || !Array.isArray(answer.body)) {
      list.replaceChildren(el("li", {class: "error"}, "History: " + answer.message));
      return;
    }
    past.next = nextLink(answer);
    list.replaceChildren(...(answer.body.length ? answer.body.map((item) =>
      el("li", {class: "row", "data-history-id": item.orderId},
         el("h3", {class: "order-id"}, "Order " + short(item.orderId)), describe(item)))
      : [el("li", {class: "muted"}, "Nothing finished yet.")]));
    $("history-page").textContent = "Page " + (past.page + 1);
    $("history-newer").disabled = past.page === 0;
    $("history-older").disabled = !past.next;
  }
  $("history-older").addEventListener("click", () => {
    if (!past.next) return;
    past.urls[past.page + 1] = past.next;
    past.page += 1;
    loadHistory();
  });
  $("history-newer").addEventListener("click", () => {
    if (past.page === 0) return;
    past.page -= 1;
    loadHistory();
  });

  poll(true);
  loadHistory();
})();

// The operator's /events page: every message on the bus as it happens (a live table), and
// one order's whole story as a picture (inline SVG, built with DOM calls: every text goes
// in through textContent) with the same story as a table for screen readers.
(() => {
  "use strict";
  if (!Pizza.allowed) return;

  const MAX_ROWS = 200; // rows kept in the live table (the newest)
  const SVG = "http://www.w3.org/2000/svg";
  const el = Pizza.el;
  const $ = (id) => document.getElementById(id);
  const tbody = $("events-body");
  const status = $("live-status");
  const pauseButton = $("pause");

  let filters = {orderId: "", type: ""};
  let source = null; // the EventSource
  let paused = false;
  let held = []; // entries that came while paused, newest last (bounded)
  let storyOrder = null; // the order whose story is shown
  let storyTimer = null;
  const knownTypes = new Set();

  // -- small helpers ---------------------------------------------------------------------

  const short = (id) => (id ? String(id).slice(0, 8) : "");
  const clockMs = (iso) => {
    const d = new Date(iso);
    if (isNaN(d)) return String(iso || "");
    return d.toLocaleTimeString("en-GB", {hour12: false}) + "." +
      String(d.getMilliseconds()).padStart(3, "0");
  };
  const between = (from, to) => {
    const ms = Date.parse(to.time) - Date.parse(from.time);
    return isNaN(ms) ? null : ms;
  };
  const took = (ms) => (ms === null ? "" : ms < 10000 ? ms + " ms" :
    (ms / 1000).toFixed(1) + " s");
  const kindWords = {"event": "event", "command": "command", "reply": "answer",
                     "dead-letter": "dead letter"};
  // A node's own id in the picture: a dead letter repeats its message's id.
  const nodeId = (m) => (m.kind === "dead-letter" ? "dead-" + m.seq : m.id);

  function query(extra) {
    const params = new URLSearchParams();
    if (filters.orderId) params.set("orderId", filters.orderId);
    if (filters.type) params.set("type", filters.type);
    for (const [k, v] of Object.entries(extra || {})) params.set(k, v);
    return params.toString();
  }

  function say(text) { status.textContent = text; }

  // -- the live table --------------------------------------------------------------------

  function storyButton(orderId) {
    if (!orderId) return "";
    return el("button", {type: "button", class: "link", "data-story": orderId,
                         "aria-label": "Show the story of order " + orderId,
                         title: orderId,
                         onclick: () => showStory(orderId, true)}, short(orderId) + "…");
  }

  function row(entry) {
    const dead = entry.deadLetter;
    const kind = el("span", {class: "kind kind-" + entry.kind}, kindWords[entry.kind] || "");
    return el("tr", {"data-seq": entry.seq, "data-id": entry.id || "",
                     "data-type": entry.type, "data-correlation-id": entry.correlationId || "",
                     class: entry.kind === "dead-letter" ? "dead-letter" : null},
      el("td", {}, el("time", {datetime: entry.time}, clockMs(entry.time))),
      el("td", {}, entry.type,
         dead ? el("div", {}, "gave up: " + dead.reason + " at " + dead.consumer) : ""),
      el("td", {}, "v" + entry.version),
      el("td", {}, entry.source),
      el("td", {}, kind),
      el("td", {}, storyButton(entry.correlationId)),
      el("td", {}, el("code", {title: entry.id || ""}, short(entry.id))),
      el("td", {}, entry.causationId ? el("code", {title: entry.causationId},
                                           short(entry.causationId)) : "—"));
  }

  function learnType(type) {
    if (knownTypes.has(type) || knownTypes.size > 200) return;
    knownTypes.add(type);
    $("known-types").append(el("option", {value: type}));
  }

  function trim() {
    while (tbody.rows.length > MAX_ROWS) tbody.lastElementChild.remove();
    $("events-empty").hidden = tbody.rows.length > 0;
  }

  function add(entry, fresh) {
    learnType(entry.type);
    const tr = row(entry);
    if (fresh) tr.classList.add("fresh");
    tbody.prepend(tr);
    trim();
    if (storyOrder && entry.correlationId === storyOrder) storySoon();
  }

  function arrived(entry) {
    if (paused) {
      held.push(entry);
      if (held.length > MAX_ROWS) held = held.slice(-MAX_ROWS);
      say("Paused: " + held.length + " new message" + (held.length === 1 ? "" : "s") +
          " waiting.");
      return;
    }
    add(entry, true);
  }

  async function load() {
    if (source) source.close();
    tbody.replaceChildren();
    held = [];
    say("Loading…");
    const answer = await Pizza.api("GET", "/api/events?" + query({limit: MAX_ROWS}));
    if (!answer.ok) { say(answer.message); return; }
    const entries = answer.body || [];
    for (const entry of entries.slice().reverse()) add(entry, false);
    trim();
    // After the newest shown; none shown: none matches yet, so all that comes is new.
    const after = entries.length ? entries[0].seq : 0;
    source = Pizza.stream("/api/events/stream?" + query({after}), "entry", arrived);
    source.addEventListener("open", () => { if (!paused) say("Live."); });
    source.addEventListener("error", () => say("Reconnecting to the live stream…"));
    say(paused ? "Paused." : "Live.");
  }

  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.setAttribute("aria-pressed", String(paused));
    pauseButton.textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      for (const entry of held) add(entry, true);
      held = [];
      say("Live.");
    } else {
      say("Paused: new messages wait until you resume.");
    }
  });

  $("filters").addEventListener("submit", (e) => {
    e.preventDefault();
    filters = {orderId: $("filter-order").value.trim(), type: $("filter-type").value.trim()};
    load();
    if (filters.orderId) showStory(filters.orderId, false);
  });

  $("clear-filters").addEventListener("click", () => {
    $("filter-order").value = "";
    $("filter-type").value = "";
    filters = {orderId: "", type: ""};
    load();
  });

  // -- one order's story -----------------------------------------------------------------

  function storySoon() {
    clearTimeout(storyTimer);
    storyTimer = setTimeout(() => showStory(storyOrder, false), 400);
  }

  async function showStory(orderId, focus) {
    storyOrder = orderId;
    const answer = await Pizza.api("GET", "/api/events/story/" + encodeURIComponent(orderId));
    if (storyOrder !== orderId) return; // another was chosen meanwhile
    const section = $("story");
    section.hidden = false;
    $("story-title").textContent = "Story of order " + orderId;
    if (!answer.ok) {
      $("story-summary").textContent = answer.message;
      $("story-picture").replaceChildren();
      $("story-body").replaceChildren();
      return;
    }
    const messages = answer.body.messages || [];
    drawStory(orderId, messages);
    if (focus) $("story-title").focus();
  }

  // What each message is to the others: cause (by id), the answer of a command, the
  // dead letters of a message.
  function relations(messages) {
    const byId = new Map();
    for (const m of messages) if (m.kind !== "dead-letter" && m.id) byId.set(m.id, m);
    const answers = new Map(); // command id -> its answer
    const deaths = new Map(); // message id -> its dead letters
    for (const m of messages) {
      if (m.kind === "reply" && m.causationId) answers.set(m.causationId, m);
      if (m.kind === "dead-letter" && m.causationId) {
        if (!deaths.has(m.causationId)) deaths.set(m.causationId, []);
        deaths.get(m.causationId).push(m);
      }
    }
    return {byId, answers, deaths};
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function marker(id, cls) {
    const m = svg("marker", {id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 8,
                             markerHeight: 8, orient: "auto-start-reverse"});
    m.append(svg("path", {d: "M0,0 L10,5 L0,10 z", class: cls}));
    return m;
  }

  function drawStory(orderId, messages) {
    const {byId, answers, deaths} = relations(messages);
    const lanes = [];
    for (const m of messages) if (!lanes.includes(m.source)) lanes.push(m.source);
    const services = lanes.length;
    $("story-summary").textContent = messages.length ?
      messages.length + " message" + (messages.length === 1 ? "" : "s") + " across " +
      services + " service" + (services === 1 ? "" : "s") + ", in time order." :
      "No messages of this order have been seen (yet).";

    // Layout: a column (lane) per service, a row per message in time order.
    const LANE_W = 200, NODE_W = 176, NODE_H = 42, ROW_H = 66, TOP = 46, LEFT = 10;
    const width = LEFT * 2 + Math.max(1, services) * LANE_W;
    const height = TOP + Math.max(1, messages.length) * ROW_H + 10;
    const place = new Map(); // node id -> {x, y} of its box's top left
    messages.forEach((m, i) => {
      place.set(nodeId(m), {x: LEFT + lanes.indexOf(m.source) * LANE_W + (LANE_W - NODE_W) / 2,
                            y: TOP + i * ROW_H + (ROW_H - NODE_H) / 2});
    });

    const picture = svg("svg", {width, height, viewBox: `0 0 ${width} ${height}`,
                                role: "img", "aria-labelledby": "story-svg-title",
                                "data-order-id": orderId});
    picture.append(svg("title", {id: "story-svg-title"},
      "Picture of the story of order " + orderId + ": " + messages.length +
      " messages, a lane per service, arrows from cause to effect. " +
      "The same story follows as a list."));
    const defs = svg("defs");
    defs.append(marker("head-cause", "head-cause"), marker("head-answer", "head-answer"),
                marker("head-dead", "head-dead"));
    picture.append(defs);

    lanes.forEach((lane, j) => {
      picture.append(svg("rect", {x: LEFT + j * LANE_W, y: 0, width: LANE_W, height,
                                  class: "lane-bg" + (j % 2 ? " odd" : ""),
                                  "data-lane": lane}));
      picture.append(svg("text", {x: LEFT + j * LANE_W + LANE_W / 2, y: 26,
                                  "text-anchor": "middle", class: "lane-name"}, lane));
    });

    // Arrows first, so the boxes sit on top of them.
    const arrows = svg("g", {class: "arrows"});
    const link = (from, to, cls, label) => {
      const a = place.get(nodeId(from)), b = place.get(nodeId(to));
      if (!a || !b) return;
      const x1 = a.x + NODE_W / 2, y1 = a.y + NODE_H;
      const x2 = b.x + NODE_W / 2, y2 = b.y;
      const sameLane = Math.abs(x1 - x2) < 1;
      // Within one lane, bow out to the right so a long arrow never hides the boxes.
      const bow = sameLane ? NODE_W / 2 + 14 + Math.min(40, (y2 - y1) / 8) : 0;
      const d = sameLane ?
        `M${x1 + NODE_W / 2},${a.y + NODE_H / 2} C${x1 + bow},${a.y + NODE_H / 2} ` +
        `${x2 + bow},${b.y + NODE_H / 2} ${x2 + NODE_W / 2},${b.y + NODE_H / 2}` :
        `M${x1},${y1} C${x1},${(y1 + y2) / 2} ${x2},${(y1 + y2) / 2} ${x2},${y2}`;
      const head = cls.includes("answer") ? "head-answer" :
        cls.includes("to-dead") ? "head-dead" : "head-cause";
      const g = svg("g", {class: "arrow " + cls, "data-from": nodeId(from),
                          "data-to": nodeId(to)});
      g.append(svg("path", {d, "marker-end": `url(#${head})`}));
      // The label sits three quarters of the way, near its effect: labels of arrows
      // that cross each other's middle then stay apart.
      const t = 0.75, u = 1 - t, my = (y1 + y2) / 2;
      const bx = u * u * u * x1 + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t * t * t * x2;
      const by = u * u * u * y1 + 3 * u * u * t * my + 3 * u * t * t * my + t * t * t * y2;
      const lx = sameLane ? x1 + bow + 4 : bx + 6;
      const ly = sameLane ? (a.y + b.y) / 2 + NODE_H / 2 + 4 : by - 4;
      g.append(svg("text", {x: lx, y: ly, class: "arrow-label"}, label));
      arrows.append(g);
    };
    for (const m of messages) {
      const cause = m.causationId ? byId.get(m.causationId) : null;
      if (!cause) continue;
      const ms = took(between(cause, m));
      if (m.kind === "dead-letter") link(cause, m, "to-dead", "gave up · " + ms);
      else if (m.kind === "reply" && cause.kind === "command") {
        link(cause, m, "answer", "answer · " + ms);
      } else link(cause, m, "cause", "+" + ms);
    }
    picture.append(arrows);

    messages.forEach((m) => {
      const p = place.get(nodeId(m));
      const died = m.kind !== "dead-letter" && deaths.has(m.id);
      const g = svg("g", {class: "node kind-" + m.kind + (died ? " died" : ""),
                          "data-id": nodeId(m), "data-message-id": m.id || "",
                          "data-causation": m.causationId || "", "data-type": m.type,
                          "data-kind": m.kind,
                          transform: `translate(${p.x},${p.y})`});
      g.append(svg("rect", {width: NODE_W, height: NODE_H, rx: 7}));
      const title = m.kind === "dead-letter" ? "✖ " + m.type : m.type + " v" + m.version;
      g.append(svg("text", {x: 8, y: 17, class: "node-type"}, title.slice(0, 26)));
      const second = m.kind === "dead-letter" && m.deadLetter ?
        "dead letter: " + m.deadLetter.reason : clockMs(m.time) + " · " + kindWords[m.kind];
      g.append(svg("text", {x: 8, y: 33, class: "node-time"}, second.slice(0, 30)));
      g.append(svg("title", {}, m.type + " v" + m.version + " (" + kindWords[m.kind] +
        ") from " + m.source + " at " + m.time + (m.id ? ", id " + m.id : "")));
      picture.append(g);
    });
    $("story-picture").replaceChildren(picture);

    // The same story as a table (what a screen reader reads).
    const number = new Map(messages.map((m, i) => [nodeId(m), i + 1]));
    $("story-body").replaceChildren(...messages.map((m, i) => {
      const cause = m.causationId ? byId.get(m.causationId) : null;
      const causeText = cause ? "#" + number.get(nodeId(cause)) + " " + cause.type :
        m.causationId ? "message " + short(m.causationId) + " (not in this story)" :
        "a person or request (no cause)";
      const notes = [];
      if (m.kind === "dead-letter" && m.deadLetter) {
        notes.push("Dead letter: " + m.deadLetter.consumer + " gave up (" +
                   m.deadLetter.reason + ").");
      }
      if (m.kind === "command") {
        const answer = answers.get(m.id);
        notes.push(answer ? "Answered by #" + number.get(nodeId(answer)) + " " + answer.type +
          " after " + took(between(m, answer)) + "." : "No answer yet.");
      }
      if (m.kind === "reply" && cause) notes.push("Answers #" + number.get(nodeId(cause)) +
                                                  " " + cause.type + ".");
      if (deaths.has(m.id) && m.kind !== "dead-letter") {
        notes.push("Dead-lettered by " + deaths.get(m.id).map((d) =>
          d.deadLetter ? d.deadLetter.consumer : "?").join(", ") + ".");
      }
      return el("tr", {class: m.kind === "dead-letter" ? "dead-letter" : null,
                       "data-id": nodeId(m)},
        el("td", {}, String(i + 1)),
        el("td", {}, el("time", {datetime: m.time}, clockMs(m.time))),
        el("td", {}, m.source),
        el("td", {}, m.type + " v" + m.version + " (" + kindWords[m.kind] + ")"),
        el("td", {}, causeText),
        el("td", {}, cause ? took(between(cause, m)) : "—"),
        el("td", {}, notes.join(" ")));
    }));
  }

  // -- start -----------------------------------------------------------------------------

  const start = new URLSearchParams(location.search);
  const order = (start.get("orderId") || "").slice(0, 64);
  const type = (start.get("type") || "").slice(0, 64);
  $("filter-order").value = order;
  $("filter-type").value = type;
  filters = {orderId: order, type};
  load();
  if (order) showStory(order, false);
})();

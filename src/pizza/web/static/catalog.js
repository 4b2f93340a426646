// The catalog page: every message type and version (GET /api/catalog), and the
// event-storming board drawn from the services' declarations (GET /api/catalog/storming).
// All text goes into the DOM through Pizza.el (textContent), never as HTML.
"use strict";

(() => {
  if (!Pizza.allowed) return;
  const el = Pizza.el;

  const KIND_WORDS = {event: "Event", command: "Command", reply: "Answer to a command"};
  const NOTE_WORDS = {
    actor: "Actor", command: "Command", aggregate: "Service", event: "Event",
    policy: "Policy", external: "External system", readModel: "Read model", query: "Query",
  };

  // Long names may break after a slash or between words of CamelCase, not inside them.
  function breakable(text) {
    return String(text).split(/(?<=\/)|(?<=[a-z])(?=[A-Z])/)
      .flatMap((part) => [part, el("wbr")]).slice(0, -1);
  }

  function problem(text) {
    const box = document.getElementById("catalog-problem");
    box.textContent = text;
    box.hidden = false;
  }

  function names(list, none) {
    return list && list.length ? list.join(", ") : none;
  }

  // -- the messages ---------------------------------------------------------------------

  function status(entry) {
    if (!entry.deprecated) return el("span", {class: "badge"}, "Current");
    return el("span", {class: "badge deprecated"},
      "Deprecated" + (entry.sunset ? ", sunset " + entry.sunset : ""));
  }

  function versionCard(entry) {
    const rows = [
      ["Subject", el("code", {}, entry.subject)],
      [entry.kind === "command" ? "Sent by" : "Produced by", names(entry.producers, "no one yet")],
    ];
    if (entry.target) rows.push(["Taken by", entry.target]);
    rows.push(["Declared consumers", names(entry.consumers, "none")]);
    rows.push(["Live consumers",
               entry.liveConsumers === null || entry.liveConsumers === undefined
                 ? "not known here" : names(entry.liveConsumers, "none")]);
    if (entry.personal && entry.personal.length) {
      rows.push(["Personal fields", entry.personal.join(", ") + " (sealed)"]);
    }
    const label = entry.type + " v" + entry.version;
    return el("div", {class: "version", "data-message": entry.type + ".v" + entry.version},
      el("h4", {}, "Version " + entry.version, " ", status(entry)),
      el("dl", {}, rows.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)])),
      el("details", {},
        el("summary", {}, "JSON Schema of " + label),
        el("pre", {tabindex: "0", "aria-label": "JSON Schema of " + label},
          JSON.stringify(entry.schema, null, 2))));
  }

  function showMessages(entries) {
    const byType = new Map();
    for (const entry of entries) {
      if (!byType.has(entry.type)) byType.set(entry.type, []);
      byType.get(entry.type).push(entry);
    }
    const box = document.getElementById("messages");
    box.replaceChildren(...[...byType.entries()].map(([type, versions]) => {
      const newest = versions[versions.length - 1];
      return el("article", {class: "panel message", "aria-labelledby": "message-" + type},
        el("div", {class: "message-head"}, el("h3", {id: "message-" + type}, type),
          el("span", {class: "badge kind-" + newest.kind}, KIND_WORDS[newest.kind] || newest.kind)),
        newest.description ? el("p", {}, newest.description) : null,
        el("div", {class: "versions"}, versions.map(versionCard)));
    }));
    const deprecated = entries.filter((e) => e.deprecated).length;
    document.getElementById("messages-summary").textContent =
      byType.size + " message types, " + entries.length + " versions" +
      (deprecated ? ", " + deprecated + " deprecated" : "") + ".";
  }

  // -- the board ------------------------------------------------------------------------

  // A read model's queries are stacked in one cell of the grid, not a row each.
  const stacked = (note) => note.kind === "readModel" && note.children.length > 0 &&
    note.children.every((child) => child.kind === "query" && !child.children.length);

  function leaves(note) {
    return note.children.length && !stacked(note)
      ? note.children.reduce((sum, child) => sum + leaves(child), 0) : 1;
  }

  // A note's sticky: column by depth, rows spanning its subtree, so the tree reads left
  // to right and each note sits beside its first follower.
  function place(note, depth, row, out) {
    const span = leaves(note);
    out.push(sticky(note, depth, row, span));
    if (stacked(note)) {
      out.push(cell(el("li", {class: "stack follows"},
        el("span", {class: "sticky-kind"}, "Queries"),
        el("ol", {class: "stack-notes"}, note.children.map((query) =>
          el("li", {class: "sticky kind-query", title: query.detail || null},
            el("span", {class: "sticky-label"}, breakable(query.label)))))),
        depth + 1, row, 1));
      return out;
    }
    let next = row;
    for (const child of note.children) {
      place(child, depth + 1, next, out);
      next += leaves(child);
    }
    return out;
  }

  function cell(item, depth, row, span) {
    item.style.gridColumn = String(depth + 1);
    item.style.gridRow = row + " / span " + span;
    return item;
  }

  // One sticky note; placed in the flow's grid when given a place (depth, row, span).
  function sticky(note, depth, row, span) {
    const extra = [];
    if (note.detail) extra.push(el("span", {class: "sticky-detail"}, breakable(note.detail)));
    if (note.deprecated) {
      extra.push(el("span", {class: "sticky-flag"},
        "Deprecated" + (note.sunset ? ", sunset " + note.sunset : "")));
    }
    if (note.repeated) extra.push(el("span", {class: "sticky-flag"}, "See above"));
    const item = el("li", {class: "sticky kind-" + note.kind + (depth ? " follows" : "")},
      el("span", {class: "sticky-kind"}, NOTE_WORDS[note.kind] || note.kind),
      el("span", {class: "sticky-label"}, breakable(note.label)), ...extra);
    return depth === undefined ? item : cell(item, depth, row, span);
  }

  function depthOf(note) {
    return 1 + note.children.reduce((most, child) => Math.max(most, depthOf(child)), 0);
  }

  function showBoard(drawn) {
    document.getElementById("legend").replaceChildren(...drawn.legend.map((entry) =>
      el("li", {},
        el("span", {class: "swatch kind-" + entry.kind, "aria-hidden": "true"}),
        el("span", {}, el("strong", {}, entry.colour[0].toUpperCase() + entry.colour.slice(1)),
          " (" + (NOTE_WORDS[entry.kind] || entry.kind).toLowerCase() + "): " +
          entry.meaning))));
    const board = document.getElementById("board");
    board.replaceChildren(...drawn.flows.map((flow, i) => {
      const command = flow.children[0];
      const title = flow.label + ": " + command.label +
        (command.detail ? " (" + command.detail + ")" : "");
      const list = el("ol", {class: "flow-grid", "aria-labelledby": "flow-" + i},
        place(flow, 0, 1, []));
      list.style.gridTemplateColumns = "repeat(" + depthOf(flow) + ", var(--note-width))";
      return el("article", {class: "flow"}, el("h3", {id: "flow-" + i}, title), list);
    }));
  }

  async function load() {
    const [catalog, drawn] = await Promise.all([
      Pizza.api("GET", "/api/catalog"), Pizza.api("GET", "/api/catalog/storming")]);
    if (catalog.ok) showMessages(catalog.body);
    else {
      document.getElementById("messages-summary").textContent = "";
      problem(catalog.message);
    }
    if (drawn.ok) showBoard(drawn.body);
    else problem(drawn.message);
  }

  load();
})();

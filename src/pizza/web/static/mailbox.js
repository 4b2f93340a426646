// The operator's mailbox: what the SMTP sink received, latest first, a page at a time,
// searched by address or subject on the server (GET /api/mailbox?q=...&limit=...). The
// first page refreshes by itself while the tab is visible; an open email stays open.
"use strict";
(() => {
  if (!Pizza.allowed) return;

  const PAGE = 20;
  const REFRESH_MS = 4000;
  const $ = (id) => document.getElementById(id);
  const el = Pizza.el;
  const state = {q: "", page: 0, urls: [], next: null};
  const open = new Set();  // keys of the emails shown open

  const key = (mail) => [mail.receivedAt, mail.to, mail.subject].join("\n");
  const when = (iso) => {
    const moment = new Date(iso);
    const today = moment.toDateString() === new Date().toDateString();
    return today ? Pizza.clock(iso)
                 : moment.toLocaleString("en-GB", {dateStyle: "short", timeStyle: "medium"});
  };

  const getList = Pizza.getList;

  function firstUrl() {
    const query = new URLSearchParams({order: "latest", limit: String(PAGE)});
    if (state.q) query.set("q", state.q);
    return "/api/mailbox?" + query;
  }

  function nextLink(answer) {
    const link = answer.headers && answer.headers.get("Link");
    const match = link && /<([^>]+)>\s*;\s*rel="next"/.exec(link);
    return match ? match[1] : null;
  }

  function rowsOf(mail, index) {
    const id = "mail-body-" + index;
    const shown = open.has(key(mail));
    const body = el("tr", {id, class: "mail-body-row", hidden: !shown},
      el("td", {colspan: "3"},
         el("p", {class: "muted"}, "From " + mail.from + " to " + mail.to),
         el("pre", {class: "mail-body"}, mail.body)));
    const toggle = el("button", {type: "button", class: "subject", "aria-expanded": String(shown),
                                 "aria-controls": id}, mail.subject || "(no subject)");
    toggle.addEventListener("click", () => {
      const opening = body.hidden;
      body.hidden = !opening;
      toggle.setAttribute("aria-expanded", String(opening));
      if (opening) open.add(key(mail)); else open.delete(key(mail));
    });
    return [
      el("tr", {class: "mail", "data-to": mail.to},
         el("td", null, el("time", {datetime: mail.receivedAt}, when(mail.receivedAt))),
         el("td", {class: "wrap"}, mail.to),
         el("td", {class: "wrap"}, toggle)),
      body,
    ];
  }

  let loading = false;
  let shown = "";
  async function load() {
    if (loading) return;
    loading = true;
    try {
      const url = state.urls[state.page] || firstUrl();
      state.urls[state.page] = url;
      const answer = await getList(url);
      const error = $("mail-error");
      if (!answer.ok || !Array.isArray(answer.body)) {
        error.textContent = answer.message;
        error.hidden = false;
        return;
      }
      error.hidden = true;
      state.next = nextLink(answer);
      const mails = answer.body;
      const signature = url + "\n" + JSON.stringify(mails);
      if (signature !== shown) {  // unchanged: leave the rows (and focus) alone
        shown = signature;
        const focused = document.activeElement && document.activeElement.closest("tr.mail")
          ? document.activeElement.textContent : null;
        $("mail-rows").replaceChildren(...mails.flatMap(rowsOf));
        if (focused !== null) {
          const again = [...document.querySelectorAll("#mail-rows button.subject")]
            .find((button) => button.textContent === focused);
          if (again) again.focus();
        }
      }
      const what = state.q ? "matching “" + state.q + "”" : "";
      $("mail-summary").textContent = mails.length
        ? "Showing " + mails.length + " email" + (mails.length === 1 ? "" : "s") +
          (what ? " " + what : "") + "."
        : (state.q ? "No email " + what + "." : "No email yet.");
      $("mail-page").textContent = "Page " + (state.page + 1);
      $("mail-newer").disabled = state.page === 0;
      $("mail-older").disabled = !state.next;
    } finally {
      loading = false;
    }
  }

  function search(q) {
    state.q = q.trim().slice(0, 100);
    state.page = 0;
    state.urls = [];
    const address = location.pathname + (state.q ? "?q=" + encodeURIComponent(state.q) : "");
    history.replaceState(null, "", address);
    load();
  }

  $("mail-search").addEventListener("submit", (event) => {
    event.preventDefault();
    search($("q").value);
  });
  $("mail-clear").addEventListener("click", () => { $("q").value = ""; search(""); });
  $("mail-older").addEventListener("click", () => {
    if (!state.next) return;
    state.urls[state.page + 1] = state.next;
    state.page += 1;
    load();
  });
  $("mail-newer").addEventListener("click", () => {
    if (state.page === 0) return;
    state.page -= 1;
    load();
  });

  // The first page keeps up by itself (new mail arrives on top); older pages stay still.
  setInterval(() => { if (!document.hidden && state.page === 0) load(); }, REFRESH_MS);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.page === 0) load();
  });

  state.q = (new URLSearchParams(location.search).get("q") || "").slice(0, 100);
  $("q").value = state.q;
  load();
})();

// What every page shares: the signed-in session, calls to the HTTP API, live streams,
// and building DOM nodes (text always goes in through textContent, never innerHTML).
"use strict";

const Pizza = (() => {
  const KEY = "pizza.session";

  // The session: {token, roles, customerId, expiresAt}. Kept in localStorage so a new tab
  // of the same browser stays signed in; dropped when it expires or the API refuses it.
  function session() {
    try {
      const s = JSON.parse(localStorage.getItem(KEY) || "null");
      if (!s || !s.token) return null;
      if (s.expiresAt && Date.parse(s.expiresAt) <= Date.now()) { signOut(); return null; }
      return s;
    } catch (_) { return null; }
  }

  // Ask the API who a token belongs to (GET /api/session), and keep it if it is valid.
  async function signIn(token) {
    const answer = await fetch("/api/session", {headers: {Authorization: "Bearer " + token}});
    const body = await answer.json().catch(() => ({}));
    if (!answer.ok) throw new Error(problemText(body, answer.status));
    const s = {token, roles: body.roles || [], customerId: body.customerId || null,
               expiresAt: expiry(token)};
    localStorage.setItem(KEY, JSON.stringify(s));
    return s;
  }

  // The token's own expiry (its "exp" claim), so the page signs out when it lapses.
  function expiry(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const exp = JSON.parse(atob(part)).exp;
      return typeof exp === "number" ? new Date(exp * 1000).toISOString() : null;
    } catch (_) { return null; }
  }

  function signOut() { localStorage.removeItem(KEY); }

  function has(roles) {
    const s = session();
    return !!s && (roles.length === 0 || s.roles.some((r) => roles.includes(r)));
  }

  function toSignIn() {
    const next = location.pathname + location.search + location.hash;
    location.replace("/sign-in?next=" + encodeURIComponent(next));
  }

  // A page that is for some roles only sends a visitor without one to sign in.
  function guardPage() {
    const wanted = (document.body.dataset.roles || "").split(" ").filter(Boolean);
    if (wanted.length && !has(wanted)) { toSignIn(); return false; }
    return true;
  }

  // Words a person understands for the API's error shape {"error": {code, message}}.
  const WORDS = {
    "unauthenticated": "Please sign in again.",
    "forbidden": "Your account may not do that.",
    "not-found": "We could not find that.",
    "rate-limited": "Too many tries. Please wait a moment and try again.",
    "validation-failed": "Some details are not right. Please check the form.",
  };
  function problemText(body, status) {
    const error = body && body.error;
    if (error && WORDS[error.code] && error.code !== "validation-failed") return WORDS[error.code];
    if (error && error.message) return error.message;
    if (status >= 500) return "Something went wrong on our side. Please try again.";
    return "That did not work (" + status + ").";
  }

  // Call the API as the signed-in person. Answers {ok, status, body, headers}; a 401
  // signs out and goes to sign in, so a stale token never leaves a page half-working.
  async function api(method, path, body, extraHeaders) {
    const headers = Object.assign({Accept: "application/json"}, extraHeaders || {});
    const s = session();
    if (s) headers.Authorization = "Bearer " + s.token;
    const init = {method, headers};
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let answer;
    try {
      answer = await fetch(path, init);
    } catch (_) {
      return {ok: false, status: 0, body: null,
              message: "We cannot reach the shop right now. Check your connection."};
    }
    const data = answer.status === 204 ? null : await answer.json().catch(() => null);
    if (answer.status === 401 && s) { signOut(); toSignIn(); }
    return {ok: answer.ok, status: answer.status, body: data, headers: answer.headers,
            message: answer.ok ? "" : problemText(data, answer.status)};
  }

  // GET a list, sending the ETag of the answer held for this URL: an unchanged list comes
  // back as a bodiless 304 and the held answer is used again (the boards poll with it).
  const held = new Map();  // url -> the last 200 answer for it
  async function getList(url) {
    const before = held.get(url);
    const etag = before && before.headers.get("ETag");
    const answer = await api("GET", url, undefined, etag ? {"If-None-Match": etag} : undefined);
    if (answer.status === 304 && before) return before;
    if (answer.ok) {
      if (held.size > 50) held.clear();
      held.set(url, answer);
    }
    return answer;
  }

  // Follow Server-Sent Events; EventSource cannot send headers, so the token goes in the
  // query (only /stream routes accept it). Reconnects by itself after an outage.
  function stream(path, eventName, onData) {
    const s = session();
    const url = path + (path.includes("?") ? "&" : "?") +
      "access_token=" + encodeURIComponent(s ? s.token : "");
    const source = new EventSource(url);
    source.addEventListener(eventName, (e) => {
      try { onData(JSON.parse(e.data)); } catch (_) { /* one bad event is skipped */ }
    });
    return source;
  }

  // el("li", {class: "x", "aria-label": "y"}, "text", otherNode, ...)
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on") && typeof value === "function") {
        node.addEventListener(name.slice(2), value);
      } else {
        node.setAttribute(name, value === true ? "" : String(value));
      }
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function toast(text) {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = text;
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { box.hidden = true; }, 4000);
  }

  const money = (amount, currency) =>
    new Intl.NumberFormat("en-GB", {style: "currency", currency: currency || "GBP"})
      .format(Number(amount));
  const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString("en-GB") : "");

  // The header: who is signed in, and signing out.
  function showWho() {
    const s = session();
    const name = document.getElementById("who-name");
    const link = document.getElementById("sign-in-link");
    const out = document.getElementById("sign-out");
    if (!name || !link || !out) return;
    name.textContent = s ? (s.customerId ? "Customer " + s.customerId : s.roles.join(", ")) : "";
    link.hidden = !!s;
    out.hidden = !s;
    out.onclick = () => { signOut(); location.assign("/"); };
  }
  document.addEventListener("DOMContentLoaded", showWho);

  // A page for some roles sends a visitor without one to sign in at once; page scripts
  // start only when ``Pizza.allowed``.
  const allowed = guardPage();

  return {allowed, session, signIn, signOut, has, toSignIn, api, getList, stream, el, toast,
          problemText, money, clock};
})();

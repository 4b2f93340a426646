// The customer's tracking page, /orders/{id}: the read model (GET /api/orders/{id}), then
// its live stream (Server-Sent Events, one "order" event per change), the emails sent,
// and cancelling while the kitchen has not finished the order.
"use strict";
(() => {
  if (!Pizza.allowed) return;

  const $ = (id) => document.getElementById(id);
  const orderId = $("order").dataset.orderId;
  const path = "/api/orders/" + encodeURIComponent(orderId);
  const title = document.title;

  // Statuses from which the customer may still cancel: the kitchen has not finished
  // (orders itself decides; a late try is answered 409).
  const CANCELLABLE = new Set(["accepted", "confirmed", "preparing"]);
  const FINAL = new Set(["completed", "cancelled"]);
  const STEPS = {
    delivery: ["accepted", "confirmed", "preparing", "prepared", "out-for-delivery",
               "delivered", "completed"],
    pickup: ["accepted", "confirmed", "preparing", "prepared", "ready-for-collection",
             "collected", "completed"],
  };
  const STEP_WORDS = {
    "accepted": "Accepted", "confirmed": "Confirmed", "preparing": "Preparing",
    "prepared": "Prepared", "out-for-delivery": "Out for delivery",
    "ready-for-collection": "Ready for collection", "delivered": "Delivered",
    "collected": "Collected", "completed": "Completed", "cancelled": "Cancelled",
  };
  // The event type that marks each step reached, for a cancelled order's progress line.
  const STEP_EVENTS = {
    "confirmed": "OrderConfirmed", "preparing": "OrderPreparing", "prepared": "OrderPrepared",
    "out-for-delivery": "OrderOutForDelivery", "ready-for-collection": "OrderReadyForCollection",
    "delivered": "OrderDelivered", "collected": "OrderCollected",
  };
  const SENTENCES = {
    "accepted": "We have your order and are confirming it.",
    "confirmed": "Your order is confirmed. The kitchen will start on it soon.",
    "preparing": "Your order is in the oven.",
    "prepared": "Your order is cooked and boxed.",
    "out-for-delivery": "Your order is on its way to you.",
    "ready-for-collection": "Your order is ready. Please collect it at the counter.",
    "delivered": "Your order has been delivered. Enjoy your meal!",
    "collected": "You have collected your order. Enjoy your meal!",
    "completed": "All done. Thank you for ordering from Plant-Based Pizza!",
    "cancelled": "This order is cancelled. Nothing will be cooked and you will not be charged.",
  };
  const EVENT_WORDS = {
    "OrderConfirmed": "Order confirmed", "OrderPreparing": "The kitchen started cooking",
    "OrderPrepared": "Cooked and boxed", "OrderOutForDelivery": "Out for delivery",
    "OrderReadyForCollection": "Ready for collection at the counter",
    "OrderDelivered": "Delivered", "OrderCollected": "Collected",
    "OrderCompleted": "Completed", "OrderCancelled": "Cancelled",
    "LoyaltyPointsAdded": "Loyalty points added",
  };
  const EMAIL_KINDS = {receipt: "Receipt", thanks: "Thank-you note",
                       cancelled: "Cancellation notice"};
  const EMAIL_STATES = {pending: "being sent", sent: "sent", failed: "could not be sent"};

  let current = null;      // the latest read model document
  let source = null;       // the EventSource
  let emailsTimer = null;
  let emailsPending = true;

  function showError(text) {
    $("order-error").textContent = text;
    $("order-error").hidden = !text;
  }

  // --- drawing the order -----------------------------------------------------------
  function progress(view) {
    const status = view.status;
    let steps = STEPS[view.fulfilment] || ["accepted", "confirmed", "preparing", "prepared"];
    if (status === "cancelled") {
      const seen = new Set((view.timeline || []).map((e) => e.type));
      steps = steps.filter((s) => s === "accepted" || seen.has(STEP_EVENTS[s]));
      steps.push("cancelled");
    }
    const at = steps.indexOf(status);
    $("progress").replaceChildren(...steps.map((step, i) => Pizza.el("li", {
      class: [i < at ? "done" : "", step === "cancelled" ? "cancelled" : ""].join(" ").trim()
        || null,
      "aria-current": i === at ? "step" : null,
    }, i < at ? "✓ " : "", STEP_WORDS[step] || step)));
  }

  function details(view) {
    const rows = [];
    const add = (term, value) => rows.push(Pizza.el("dt", {}, term), Pizza.el("dd", {}, value));
    if (view.value !== undefined) add("Total", Pizza.money(view.value, view.currency));
    if (view.itemCount !== undefined) add("Items", String(view.itemCount));
    if (view.fulfilment) {
      add("How", view.fulfilment === "delivery" ? "Delivery to your address"
        : "Pickup at the counter");
    }
    if (view.loyaltyPoints !== undefined) {
      add("Loyalty points", view.loyaltyPoints + (view.loyaltyPoints === 1 ? " point" : " points") +
          " added for this order");
    }
    $("details").replaceChildren(...rows);
  }

  function timeline(view) {
    $("timeline").replaceChildren(...(view.timeline || []).map((entry) => Pizza.el("li", {},
      Pizza.el("time", {datetime: entry.time}, Pizza.clock(entry.time)), " ",
      EVENT_WORDS[entry.type] || entry.type)));
  }

  function render(view) {
    current = view;
    $("order-waiting").hidden = true;
    showError("");
    $("order-status").textContent = view.status;
    $("order-sentence").textContent = SENTENCES[view.status] || "";
    document.title = title.replace(/^[^·]*/, "Your order: " + (STEP_WORDS[view.status] ||
                                                                 view.status) + " ");
    progress(view);
    details(view);
    timeline(view);
    $("cancel-box").hidden = !CANCELLABLE.has(view.status);
    loadEmails();
  }

  // --- emails (not in the read model: read on each change, and while any is pending) --
  let emailsBusy = false;
  let emailsAgain = false;
  async function loadEmails() {
    if (emailsBusy) { emailsAgain = true; return; }
    emailsBusy = true;
    clearTimeout(emailsTimer);
    const answer = await Pizza.api("GET", path + "/emails");
    if (answer.ok && Array.isArray(answer.body)) {
      $("emails-note").hidden = answer.body.length > 0;
      $("emails").replaceChildren(...answer.body.map((email) => Pizza.el("li", {},
        (EMAIL_KINDS[email.kind] || email.kind) + ": ",
        Pizza.el("span", {class: email.status === "failed" ? "badge failed" : "badge"},
                 EMAIL_STATES[email.status] || email.status))));
      emailsPending = answer.body.some((email) => email.status === "pending");
    }
    emailsBusy = false;
    if (emailsAgain) { emailsAgain = false; loadEmails(); return; }
    const settled = current && FINAL.has(current.status) && !emailsPending;
    if (!settled) emailsTimer = setTimeout(loadEmails, 4000);
  }

  // --- following the order -----------------------------------------------------------
  function follow() {
    if (source) source.close();
    source = Pizza.stream(path + "/stream", "order", (view) => {
      render(view);
      // The stream ends after this (cancelled, or completed with its points): do not
      // let the browser open it again.
      if (view.status === "cancelled" ||
          (view.status === "completed" && view.loyaltyPoints !== undefined)) {
        source.close();
      }
    });
    source.onerror = () => {
      if (current && FINAL.has(current.status)) {
        source.close();  // completed, and the points never came: nothing more to wait for
      } else if (source.readyState === EventSource.CLOSED) {
        setTimeout(load, 3000);  // refused (not an outage the browser retries): start over
      }
    };
  }

  const started = Date.now();
  async function load() {
    const answer = await Pizza.api("GET", path);
    if (answer.ok && answer.body) {
      render(answer.body);
      if (!(answer.body.status === "cancelled" ||
            (answer.body.status === "completed" && answer.body.loyaltyPoints !== undefined))) {
        follow();
      }
      return;
    }
    if (answer.status === 404) {
      // The query side has not seen it yet (it is a moment behind the order being taken).
      const waiting = $("order-waiting");
      waiting.hidden = false;
      if (Date.now() - started > 30000) {
        waiting.textContent = "We are still confirming this order. If you have just " +
          "placed it, please keep this page open; otherwise check the link.";
      }
      setTimeout(load, Date.now() - started > 30000 ? 5000 : 1000);
      return;
    }
    showError(answer.message + " We will try again in a moment.");
    setTimeout(load, 5000);
  }

  // --- cancelling --------------------------------------------------------------------
  $("cancel-order").addEventListener("click", async () => {
    const button = $("cancel-order");
    button.disabled = true;
    showError("");
    const answer = await Pizza.api("POST", path + "/cancel");
    button.disabled = false;
    if (answer.ok) {
      $("cancel-box").hidden = true;
      $("order-sentence").textContent = "Cancelling your order…";
      Pizza.toast("Your order is being cancelled.");
      if (!source || source.readyState === EventSource.CLOSED) load();
      return;
    }
    if (answer.status === 409) {
      $("cancel-box").hidden = true;
      showError("The kitchen has already finished your order, so it can no longer be " +
                "cancelled.");
      return;
    }
    showError(answer.message);
  });

  // --- start -------------------------------------------------------------------------
  if (!Pizza.session()) {
    const link = $("sign-in-link-order");
    link.href = "/sign-in?next=" + encodeURIComponent(location.pathname);
    $("signed-out").hidden = false;
    return;
  }
  if (sessionStorage.getItem("pizza.placed") === orderId) {
    // Just placed here: it is accepted, and the query side is a moment behind.
    $("order-status").textContent = "accepted";
    $("order-sentence").textContent = SENTENCES.accepted;
    progress({status: "accepted", timeline: []});
  }
  load();
})();

// Sign in: a customer with an email and password (or a new account), staff with a token,
// pasted or from a link's fragment (/sign-in?next=/kitchen#token=...; a fragment never
// reaches a server or its logs). Then on to ?next= (a path of ours only).
"use strict";
(() => {
  const EMAIL_KEY = "pizza.email"; // the order form fills its email from here
  const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s.]+$/;

  const next = () => {
    const wanted = new URLSearchParams(location.search).get("next") || "/";
    return wanted.startsWith("/") && !wanted.startsWith("//") ? wanted : "/";
  };
  const show = (id, message) => {
    const box = document.getElementById(id);
    if (!box) return;
    box.textContent = message;
    box.hidden = !message;
  };
  const clearAll = () => {
    for (const id of ["account-error", "create-error", "sign-in-error"]) show(id, "");
  };

  async function use(token) {
    try {
      await Pizza.signIn(token.trim());
      location.replace(next());
    } catch (error) {
      show("sign-in-error", error.message || "That token was not accepted.");
    }
  }
  const fragment = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fragment) {
    history.replaceState(null, "", location.pathname + location.search);
    use(fragment);
  }
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearAll();
    use(document.getElementById("token").value);
  });

  // -- customers: email and password ----------------------------------------------------
  const creating = (form) => form.id === "create-form";

  // What is wrong with the form before asking the shop, in words; "" when nothing is.
  function problem(form, email, password) {
    if (!email) return "Please enter your email address.";
    if (email.length > 254 || !EMAIL.test(email)) {
      return "That does not look like an email address. Please check it.";
    }
    if (!password) return "Please enter your password.";
    if (creating(form) && password.length < 8) {
      return "Your password needs at least 8 characters.";
    }
    if (password.length > 128) return "Your password can be at most 128 characters.";
    return "";
  }

  // Words for the shop's answer to POST /api/accounts or /api/session.
  function refusal(form, status, body) {
    if (status === 401) {
      return "That email and password do not match an account. Check them and try again, " +
        "or create an account.";
    }
    if (status === 409) {
      return "There is already an account for this email. Sign in with it instead.";
    }
    if (status === 422 || status === 400) {
      return creating(form)
        ? "Please enter a valid email address and a password of 8 to 128 characters."
        : "That email and password do not match an account. Check them and try again.";
    }
    if (status === 0) return "We cannot reach the shop right now. Check your connection.";
    return Pizza.problemText(body, status);
  }

  async function submit(form) {
    clearAll();
    const errorId = creating(form) ? "create-error" : "account-error";
    const emailField = form.querySelector("input[name=email]");
    const passwordField = form.querySelector("input[name=password]");
    const email = emailField.value.trim();
    const password = passwordField.value;
    const wrong = problem(form, email, password);
    emailField.removeAttribute("aria-invalid");
    passwordField.removeAttribute("aria-invalid");
    if (wrong) {
      const field = /password/i.test(wrong) ? passwordField : emailField;
      field.setAttribute("aria-invalid", "true");
      show(errorId, wrong);
      field.focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      // Not Pizza.api: it would send a signed-in visitor's old token along, and take a
      // 401 here (a wrong password) for an expired session.
      let answer = null;
      let body = null;
      try {
        answer = await fetch(form.dataset.path, {
          method: "POST",
          headers: {"Content-Type": "application/json", Accept: "application/json"},
          body: JSON.stringify({email, password}),
        });
        body = await answer.json().catch(() => null);
      } catch (_) { /* no answer: status 0 below */ }
      const status = answer ? answer.status : 0;
      if (!answer || !answer.ok || !body || !body.token) {
        show(errorId, refusal(form, status, body));
        if (status === 401) passwordField.select();
        return;
      }
      await Pizza.signIn(body.token);
      try { localStorage.setItem(EMAIL_KEY, email); } catch (_) { /* storage may be off */ }
      location.replace(next());
    } catch (error) {
      show(errorId, (error && error.message) || "Something went wrong. Please try again.");
    } finally {
      button.disabled = false;
    }
  }

  for (const id of ["account-form", "create-form"]) {
    const form = document.getElementById(id);
    if (!form) continue; // an outside identity provider: no accounts here
    form.noValidate = true; // our own messages, in the alert box, instead of the browser's
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      submit(form);
    });
  }
})();

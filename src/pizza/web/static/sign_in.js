// Sign in with a token: pasted, or from a link's fragment (/sign-in?next=/kitchen#token=...;
// a fragment never reaches a server or its logs). Then on to ?next= (a path of ours only).
"use strict";
(() => {
  const next = () => {
    const wanted = new URLSearchParams(location.search).get("next") || "/";
    return wanted.startsWith("/") && !wanted.startsWith("//") ? wanted : "/";
  };
  const failed = (message) => {
    const box = document.getElementById("sign-in-error");
    box.textContent = message;
    box.hidden = false;
  };
  async function use(token) {
    try {
      await Pizza.signIn(token.trim());
      location.replace(next());
    } catch (error) {
      failed(error.message || "That token was not accepted.");
    }
  }
  const fragment = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fragment) {
    history.replaceState(null, "", location.pathname + location.search);
    use(fragment);
  }
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    use(document.getElementById("token").value);
  });
})();

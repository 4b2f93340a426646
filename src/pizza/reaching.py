"""How the command-line tools reach a running system: its URL and a token to show it.

``pizza up`` records the URL it serves in ``$PIZZA_HOME/url`` (and removes it when it
stops), so ``pizza order``, ``pizza simulate``, ``pizza replay`` and ``pizza status`` find
the system started from the same home whatever its port. Their token comes from
``PIZZA_TOKEN`` if set, else from the home's own issuer (the signing key ``pizza up``
made). With ``PIZZA_OIDC_ISSUER`` set our issuer is off: get a token from that identity
provider and put it in ``PIZZA_TOKEN``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pizza.eventing import settings

DEFAULT_URL = "http://127.0.0.1:8000"


class NoToken(RuntimeError):
    """The tools cannot make a token here (an outside identity provider is in use)."""


def url_file() -> Path:
    return settings.home() / "url"


def record_url(url: str) -> None:
    url_file().parent.mkdir(parents=True, exist_ok=True)
    url_file().write_text(url + "\n")


def forget_url() -> None:
    with contextlib.suppress(OSError):
        url_file().unlink()


def system_url(explicit: str | None = None) -> str:
    """``explicit``, else the URL the system on ``$PIZZA_HOME`` serves, else :8000."""
    if explicit:
        return explicit.rstrip("/")
    with contextlib.suppress(OSError):
        recorded = url_file().read_text().strip()
        if recorded:
            return recorded
    return DEFAULT_URL


def token(role: str, customer: str | None = None) -> str:
    """A bearer token for ``role``: PIZZA_TOKEN, else one from the home's own issuer."""
    given = os.environ.get("PIZZA_TOKEN")
    if given:
        return given
    from pizza import config

    issuer = config.settings().oidc_issuer
    if issuer:
        raise NoToken(f"tokens come from the identity provider {issuer[:200]} "
                      "(PIZZA_OIDC_ISSUER): get one there and set PIZZA_TOKEN")
    from pizza.web.identity import issue_token

    return issue_token(role, customer)


def signed_in(role: str, customer: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, customer)}"}

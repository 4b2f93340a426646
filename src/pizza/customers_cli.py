"""``pizza customers``: what an operator does about a customer's personal data.

    pizza customers forget ID       erase the customer's personal data everywhere

It asks the running system (``POST /api/admin/customers/{ID}/forget``, as an operator):
orders blanks its copy and publishes CustomerForgotten, which purges the customer's key
(what the streams hold about them becomes unreadable) and makes every other service
erase its own copy. See the README, "Personal data".
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import httpx
import typer

from pizza.cli_common import fail

customers = typer.Typer(help="A customer's personal data.", no_args_is_help=True,
                        add_completion=False)

ANSWER_SECONDS = 5.0
MAX_CUSTOMER_ID = 100


def _reach(url: str | None) -> tuple[str, dict[str, str]]:
    """The system's URL and an operator's credentials (PIZZA_TOKEN, or the home's own)."""
    from pizza import reaching

    try:
        return reaching.system_url(url), reaching.signed_in("operator")
    except reaching.NoToken as why:
        fail(str(why))
    except (OSError, ValueError) as error:
        fail(f"cannot make an operator token: {error}")


@customers.command()
def forget(
    customer_id: Annotated[str, typer.Argument(metavar="ID", help="The customer's id.")],
    url: Annotated[str | None, typer.Option(
        help="The system's base URL (default: the one `pizza up` on PIZZA_HOME serves, "
             "else http://127.0.0.1:8000).")] = None,
) -> None:
    """Erase a customer's personal data: emails, delivery addresses, and (by purging their
    key) every copy sealed on the streams. Loyalty points and order history stay, under
    the customer id only."""
    if not 0 < len(customer_id) <= MAX_CUSTOMER_ID:
        fail(f"a customer id has 1 to {MAX_CUSTOMER_ID} characters")
    base, headers = _reach(url)
    path = f"/api/admin/customers/{quote(customer_id, safe='')}/forget"
    try:
        answer = httpx.post(base + path, headers=headers, timeout=ANSWER_SECONDS)
    except httpx.HTTPError as error:
        fail(f"nothing answers at {base}: is `pizza up` running? ({type(error).__name__})")
    if answer.status_code != 202:
        fail(f"POST {path} answered {answer.status_code}: {answer.text[:300]}")
    orders = answer.json().get("orders", 0)
    typer.echo(f"customer forgotten: {orders} order(s) held their email; every service "
               "erases its own copy, and their sealed data on the streams is unreadable")

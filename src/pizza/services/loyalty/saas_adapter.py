"""The anti-corruption layer in front of the third-party loyalty SaaS.

Our model speaks of customers, orders and points; theirs of members, credits and
references, with its own error shape, rate limit and bad days. Everything about them is
in this module, so the rest of the service never sees their vocabulary or their failures
in any form but two of ours:

* ``LoyaltyUnavailable``: they are down, slow, rate limiting us, or our circuit breaker
  is open. Retryable: a handler lets it propagate and the kernel retries with backoff;
  a route answers 503.
* ``LoyaltyRefused``: they answered that our request is wrong (a 4xx other than 404 or
  429). No retry can fix it: the handler rejects the message to dead letters.

And the protections we owe ourselves and them:

* a client-side token bucket (``PIZZA_LOYALTY_SAAS_RPS``) keeps us under their limit;
* a 429's Retry-After pauses every call of this process; a short pause is waited out in
  place (at most ``max_wait`` seconds, while the message is in hand), a longer one turns
  into LoyaltyUnavailable so the message waits in its queue instead;
* 5xx, timeouts and connection errors count towards a circuit breaker
  (``PIZZA_LOYALTY_SAAS_FAILURES`` in a row open it for ``PIZZA_LOYALTY_SAAS_COOL_DOWN``
  seconds), during which we fail fast without calling them;
* every credit carries ``Idempotency-Key: <order id>``, so a retry after a lost answer
  replays their first answer instead of crediting twice.

One shared ``httpx.AsyncClient`` per service run: a ``SaasConnection`` made by the
service's factory opens it when the service starts (on_start) and closes it on stop.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pizza.eventing.settings import number
from pizza.services.loyalty.resilience import CircuitBreaker, Clock, TokenBucket

if TYPE_CHECKING:
    from pizza.eventing.host import ServiceHost

log = logging.getLogger("pizza.services.loyalty.saas")

RATE_LIMIT_RETRIES = 2  # 429s waited out in place before the message goes back to its queue


class LoyaltyUnavailable(Exception):
    """The SaaS cannot help now; try again later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LoyaltyRefused(Exception):
    """The SaaS says our request is wrong; retrying the same request will not help."""


@dataclass(frozen=True)
class SaasOptions:
    requests_per_second: float = 10.0
    failure_threshold: int = 5
    cool_down: float = 30.0
    timeout: float = 5.0
    max_wait: float = 2.0  # longest a call waits for its turn (our bucket or their 429)

    @classmethod
    def from_env(cls) -> SaasOptions:
        """Read at start: PIZZA_LOYALTY_SAAS_RPS, _FAILURES, _COOL_DOWN, _TIMEOUT."""
        return cls(
            requests_per_second=number("PIZZA_LOYALTY_SAAS_RPS", cls.requests_per_second),
            failure_threshold=max(1, int(number("PIZZA_LOYALTY_SAAS_FAILURES",
                                                cls.failure_threshold))),
            cool_down=number("PIZZA_LOYALTY_SAAS_COOL_DOWN", cls.cool_down),
            timeout=number("PIZZA_LOYALTY_SAAS_TIMEOUT", cls.timeout),
        )


class _Member(BaseModel):
    """Their answer about a member; extra fields they may add are ignored."""

    model_config = ConfigDict(extra="ignore")
    member_id: str = Field(alias="memberId")
    balance: int


class LoyaltySaas:
    """Credits and balances, in our words, from the SaaS."""

    def __init__(self, base_url: str, options: SaasOptions | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clock: Clock = time.monotonic) -> None:
        self.options = options or SaasOptions()
        self.client = httpx.AsyncClient(
            base_url=base_url, timeout=self.options.timeout, transport=transport,
            headers={"User-Agent": "plant-based-pizza-loyalty/1"})
        self.breaker = CircuitBreaker(self.options.failure_threshold, self.options.cool_down,
                                      clock)
        self.limiter = TokenBucket(self.options.requests_per_second, clock=clock)

    async def close(self) -> None:
        await self.client.aclose()

    async def credit(self, customer_id: str, order_id: str, points: int) -> int:
        """Credit an order's points to the customer; return their new balance.

        Safe to repeat: the order id is the idempotency key, so a repeat gets the first
        answer back and credits nothing.
        """
        response = await self._call(
            "POST", f"/v1/members/{_member_id(customer_id)}/credits",
            json={"points": points, "reference": order_id},
            headers={"Idempotency-Key": order_id})
        if response.status_code in (200, 201):
            return _balance(response)
        raise LoyaltyRefused(_describe(response))

    async def balance(self, customer_id: str) -> int:
        """The customer's points; 0 for someone they do not know yet."""
        response = await self._call("GET", f"/v1/members/{_member_id(customer_id)}")
        if response.status_code == 404:
            return 0
        if response.status_code == 200:
            return _balance(response)
        raise LoyaltyRefused(_describe(response))

    async def _call(self, method: str, path: str, **options: Any) -> httpx.Response:
        """One request through the guards; short 429 pauses are waited out here."""
        for _ in range(1 + RATE_LIMIT_RETRIES):
            response = await self._once(method, path, **options)
            if response.status_code != 429:
                return response
            wait = _retry_after(response)
            self.limiter.pause(wait)
            log.info("loyalty SaaS rate limited us; pausing %.1fs", wait)
        raise LoyaltyUnavailable("the loyalty SaaS keeps rate limiting us")

    async def _once(self, method: str, path: str, **options: Any) -> httpx.Response:
        if self.breaker.state == "open":
            raise self._circuit_open()
        too_long = await self.limiter.acquire(self.options.max_wait)
        if too_long is not None:
            raise LoyaltyUnavailable(f"rate limit: our turn comes in {too_long:.1f}s",
                                     retry_after=too_long)
        if not self.breaker.allow():  # opened while we waited, or a trial is out
            raise self._circuit_open()
        try:
            response = await self.client.request(method, path, **options)
        except httpx.HTTPError as error:  # timeouts, refused connections, resets
            self.breaker.failed()
            raise LoyaltyUnavailable(f"loyalty SaaS unreachable: {error!r}") from error
        if response.status_code >= 500:
            self.breaker.failed()
            raise LoyaltyUnavailable(f"loyalty SaaS failed: {_describe(response)}")
        self.breaker.succeeded()  # any other answer shows they are alive
        return response

    def _circuit_open(self) -> LoyaltyUnavailable:
        wait = self.breaker.retry_in()
        return LoyaltyUnavailable(f"circuit open after {self.breaker.failures} failures; "
                                  f"next try in {wait:.1f}s", retry_after=wait)


def _member_id(customer_id: str) -> str:
    """Our customer is their member, under the same id (escaped for a URL path)."""
    return quote(customer_id, safe="")


def _balance(response: httpx.Response) -> int:
    try:
        return _Member.model_validate_json(response.content).balance
    except ValidationError as error:
        raise LoyaltyUnavailable(f"loyalty SaaS answered something unreadable: {error}") \
            from None


def _retry_after(response: httpx.Response) -> float:
    """Retry-After in seconds (delta-seconds or an HTTP date); 1 s when absent or odd."""
    raw = response.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return 1.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else 1.0


def _describe(response: httpx.Response) -> str:
    return f"{response.status_code} {response.text[:200]}"


# -- one adapter per service run ----------------------------------------------------------


class SaasConnection:
    """The adapter of one loyalty service, open while it runs: the factory makes one for
    the SaaS at ``base_url`` and adds ``open``/``close`` to the service's start and stop."""

    def __init__(self, base_url: str | None) -> None:
        self.base_url = base_url
        self.adapter: LoyaltySaas | None = None

    def current(self) -> LoyaltySaas:
        """The open adapter; LoyaltyUnavailable until the service has opened it."""
        if self.adapter is None:
            raise LoyaltyUnavailable("the loyalty SaaS adapter is not open")
        return self.adapter

    def breaker_state(self) -> str | None:
        """The circuit breaker's state, for /metrics; None while it is not open."""
        return None if self.adapter is None else self.adapter.breaker.state

    async def open(self, _host: ServiceHost) -> None:
        """on_start: one shared HTTP client for this run."""
        if not self.base_url:
            raise RuntimeError("PIZZA_LOYALTY_BACKEND=saas needs PIZZA_LOYALTY_SAAS_URL")
        await self.close(_host)
        self.adapter = LoyaltySaas(self.base_url, SaasOptions.from_env())
        log.info("loyalty points go to the SaaS at %s", self.base_url)

    async def close(self, _host: ServiceHost) -> None:
        """on_stop: close the shared client."""
        adapter, self.adapter = self.adapter, None
        if adapter is not None:
            await adapter.close()

"""The operator's /events page: messages appear live, and one order's story is drawn
cause to effect (issue #11).

An order is placed and moved on over the API (as the operator); the operator watches
/events, opens the order's story, and the picture links each effect to its cause: the
kitchen's OrderPrepared leads to the counter's OrderReadyForCollection, the collection to
OrderCompleted, that to the loyalty points, and each SendEmail to its EmailSent answer;
a dead letter of one of its messages is drawn in red.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from playwright.async_api import Locator, Page, expect
from running_pizza import Pizza, eventually

from pizza.eventing.transport.base import (
    DEAD_ATTEMPTS,
    DEAD_CONSUMER,
    DEAD_ERROR,
    DEAD_REASON,
    DEAD_SUBJECT,
)

SignIn = Callable[..., Awaitable[Page]]
WAIT_MS = 30_000


def node(page: Page, message_type: str, kind: str = "event") -> Locator:
    return page.locator(f'#story-picture g.node[data-type="{message_type}"]'
                        f'[data-kind="{kind}"]')


async def linked(page: Page, cause: str, effect: str, *, cause_kind: str = "event",
                 effect_kind: str = "event") -> str:
    """Assert the picture has an arrow from the cause's node to the effect's (the effect's
    causationId is the cause's id); the arrow's label (the time it took)."""
    cause_id = await node(page, cause, cause_kind).first.get_attribute("data-id")
    effect_node = node(page, effect, effect_kind).first
    assert cause_id and await effect_node.get_attribute("data-causation") == cause_id, \
        f"{effect} is not caused by {cause}"
    effect_id = await effect_node.get_attribute("data-id")
    arrow = page.locator(f'#story-picture g.arrow[data-from="{cause_id}"]'
                         f'[data-to="{effect_id}"]')
    await expect(arrow).to_have_count(1)
    return (await arrow.locator("text").text_content()) or ""


async def dead_letter(shop: Pizza, order_id: str, message_type: str, service: str,
                      queue: str) -> None:
    """Store a dead letter of the order's message as a consumer's kernel does."""
    nc = await shop.connect()
    try:
        js = nc.jetstream()
        last = int((await js.stream_info("PIZZA_EVENTS")).state.last_seq)
        for seq in range(1, last + 1):
            stored = await js.get_msg("PIZZA_EVENTS", seq)
            meta = orjson.loads(stored.data or b"{}")["metadata"]
            if meta["type"] == message_type and meta["correlationId"] == order_id:
                await js.publish(f"pizza.deadletters.{service}.{queue}", stored.data or b"",
                                 headers={"Nats-Msg-Id": f"dead-{service}-{queue}-"
                                                         f"{meta['id']}-5",
                                          DEAD_REASON: "handler-failed",
                                          DEAD_ERROR: "RuntimeError: the oven is cold",
                                          DEAD_ATTEMPTS: "5",
                                          DEAD_SUBJECT: stored.subject or "",
                                          DEAD_CONSUMER: f"{service}-{queue}"})
                return
        raise AssertionError(f"no {message_type} of {order_id} on the bus")
    finally:
        await nc.close()


async def test_the_operator_sees_an_order_s_messages_live_and_its_story_cause_to_effect(
        shop: Pizza, sign_in: SignIn, check_a11y: Callable[[Page], Awaitable[None]],
        screenshot: Callable[[Page, str], Awaitable[Path]]) -> None:
    page = await sign_in("operator", next="/events")
    await expect(page.get_by_role("status").first).to_have_text("Live.", timeout=WAIT_MS)

    order_id = await shop.place("ada", pickup=True)
    rows = page.locator(f'#events-body tr[data-correlation-id="{order_id}"]')
    # Live, without a reload: the order's confirmation and its receipt appear.
    await expect(rows.filter(has_text="OrderConfirmed").first).to_be_visible(timeout=WAIT_MS)
    await expect(rows.filter(has_text="SendEmail").first).to_be_visible(timeout=WAIT_MS)

    for step in ("kitchen/tickets/{id}/start", "kitchen/tickets/{id}/prepared",
                 "pickup/orders/{id}/collected"):
        async def done(path: str = "/api/" + step.format(id=order_id)) -> bool:
            # The kitchen and the counter hear of the order a moment later: until then
            # their button answers that they hold no such order.
            return (await shop.http.post(path)).status_code == 202
        await eventually(done, WAIT_MS / 1000)
    await shop.reaches(order_id, "completed")
    await expect(rows.filter(has_text="LoyaltyPointsAdded")).to_have_count(1, timeout=WAIT_MS)
    await expect(rows.filter(has_text="EmailSent")).to_have_count(2, timeout=WAIT_MS)
    # Filtered by type: only that type's messages, and they still come live.
    await page.get_by_label("Message type").fill("EmailSent")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("#events-body tr")).to_have_count(2)
    await page.get_by_role("button", name="Clear").click()
    await expect(rows.filter(has_text="OrderPrepared")).to_have_count(1)

    # Paused, nothing new is shown; resumed, what came meanwhile is. The kitchen's queue
    # gives up on OrderPreparing: its dead letter, as the kernel stores one (the message's
    # own bytes, why in the headers), shows in red.
    await page.get_by_role("button", name="Pause").click()
    await dead_letter(shop, order_id, "OrderPreparing", "kitchen", "order-preparing")
    await expect(page.get_by_role("status").first).to_have_text(
        "Paused: 1 new message waiting.", timeout=WAIT_MS)
    dead_row = page.locator(f'#events-body tr.dead-letter[data-correlation-id="{order_id}"]')
    await expect(dead_row).to_have_count(0)
    await page.get_by_role("button", name="Resume").click()
    await expect(dead_row).to_contain_text("handler-failed")
    await check_a11y(page)
    await screenshot(page, "events")

    await rows.filter(has_text="OrderCompleted").get_by_role(
        "button", name=f"Show the story of order {order_id}").click()
    await expect(page.get_by_role("heading", name=f"Story of order {order_id}")).to_be_focused()
    picture = page.locator(f'#story-picture svg[data-order-id="{order_id}"]')
    await expect(picture).to_be_visible()
    await expect(node(page, "LoyaltyPointsAdded")).to_have_count(1, timeout=WAIT_MS)
    await expect(node(page, "EmailSent", "reply")).to_have_count(2, timeout=WAIT_MS)

    # A lane per service that took part.
    lanes = set(await picture.locator("[data-lane]").evaluate_all(
        "lanes => lanes.map(l => l.dataset.lane)"))
    assert {"orders", "kitchen", "pickup", "notifications", "loyalty"} <= lanes

    took = await linked(page, "OrderPrepared", "OrderReadyForCollection")
    assert took.startswith("+") and took.endswith(("ms", "s"))
    # What people started by a click follows on from what they acted on.
    await linked(page, "OrderPreparing", "OrderPrepared")
    await linked(page, "OrderReadyForCollection", "OrderCollected")
    confirmed_ids = await node(page, "OrderConfirmed").evaluate_all(
        "nodes => nodes.map(n => n.dataset.id)")
    assert await node(page, "OrderPreparing").first.get_attribute(
        "data-causation") in confirmed_ids
    await linked(page, "OrderCollected", "OrderCompleted")
    await linked(page, "OrderCompleted", "LoyaltyPointsAdded")
    # Each command is paired with its answer.
    for command in await node(page, "SendEmail", "command").all():
        command_id = await command.get_attribute("data-id")
        answer = page.locator(f'#story-picture g.node[data-kind="reply"]'
                              f'[data-causation="{command_id}"]')
        await expect(answer).to_have_count(1)
        assert await answer.get_attribute("data-type") == "EmailSent"
        arrow = page.locator(f'#story-picture g.arrow.answer[data-from="{command_id}"]')
        await expect(arrow).to_contain_text("answer")

    # The dead letter: a red node in the lane of the service that gave up, its arrow from
    # the message it died of, that message marked.
    dead = node(page, "OrderPreparing", "dead-letter")
    await expect(dead).to_have_count(1)
    red = await dead.locator("rect").evaluate("r => getComputedStyle(r).stroke")
    assert red == "rgb(165, 42, 31)", red  # --tomato
    preparing_id = await node(page, "OrderPreparing").get_attribute("data-id")
    assert await dead.get_attribute("data-causation") == preparing_id
    await expect(node(page, "OrderPreparing")).to_have_class(re.compile(r"\bdied\b"))
    await expect(page.locator(f'#story-picture g.arrow.to-dead[data-from="{preparing_id}"]'
                              )).to_have_count(1)

    # The text alternative tells the same story.
    story_rows = page.locator("#story-body tr")
    await expect(story_rows).to_have_count(await picture.locator("g.node").count())
    ready = story_rows.filter(has_text="OrderReadyForCollection").first  # then Collected's
    await expect(ready).to_contain_text("OrderPrepared")
    await expect(story_rows.filter(has_text="SendEmail").first).to_contain_text(
        "Answered by")
    await check_a11y(page)
    await screenshot(page, "events-story")

"""The web page end to end, in a real browser (Debian's chromium, headless) against the real
app, SMTP door and workers: sign in, see the Kanban; a mail sent over SMTP moves its card to
the top of its column and changes the counter without a reload; opening the card clears
its unread mark; the Archive button shows the card's address. Screenshots go to
artifacts/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import FakeClock
from tests.support.browser import Page, close_network, expect, open_page, screenshot
from tests.support.calllog import card_with_phone
from tests.support.helpers import (
    TWO_FROMS,
    archive_address,
    create_card,
    create_user,
    make_mail,
    send,
    wait_for,
)
from tests.support.payments import our_payment, payment_source, post_payment

# Mail text is hostile input: the page must show it as text, never run it.
HOSTILE = "<img src=x onerror=\"document.title='pwned'\"> Quote & <b>terms</b>"
FORWARD = f"""Please handle this one.

---------- Forwarded message ---------
From: John Doe <john.doe@acme.com>
Date: Wed, Oct 27, 2021 at 9:31 AM
Subject: {HOSTILE}
To: <anna@example.com>

Hello, <script>document.title='pwned'</script> here is our order.
"""
LIVE = 30_000  # ms: a generous ceiling for the worker and the event stream, not a speed test


@pytest.fixture
def page(api: httpx.Client) -> Iterator[Page]:
    with open_page(str(api.base_url)) as opened:
        yield opened


def kanban_card(api: httpx.Client, card_id: int) -> dict[str, Any]:
    [card] = [c for c in api.get("/api/kanban").json()["cards"] if c["id"] == card_id]
    return dict(card)


@pytest.mark.usefixtures("worker")
def test_the_kanban_moves_live_and_the_card_page_reads_and_archives(
    api: httpx.Client, smtp_server: tuple[str, int], page: Page
) -> None:
    # Given Anna with her token, and her deals: the one that will get mail is at the bottom
    anna = create_user(api, "anna@example.com", "Anna Martin")
    token = api.post(f"/api/users/{anna['id']}/tokens", json={"name": "browser"}).json()["token"]
    target = create_card(api, anna["id"], title="Acme renewal")
    for title in ("Globex pilot", "Initech upgrade"):
        create_card(api, anna["id"], title=title)
    create_card(api, anna["id"], title="Umbrella rollout", stage="negotiation")
    address = archive_address(api, target["id"])

    # When she signs in, first with a wrong token
    page.goto("/")
    page.fill("#token", "not-my-token")
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#sign-in-error")).to_contain_text("not valid")
    page.fill("#token", token)
    page.click("#sign-in-form button[type=submit]")

    # Then she sees the Kanban: columns by stage, her name, her counters, the live stream
    new_column = page.locator('.column[data-stage="new"] .card')
    expect(new_column).to_have_count(3)
    expect(page.locator('.column[data-stage="negotiation"] .card')).to_have_count(1)
    expect(new_column.first).not_to_have_attribute("data-card-id", str(target["id"]))
    expect(page.locator("#me")).to_have_text("Anna Martin")
    expect(page.locator("#counter-incoming")).to_have_text("0")
    expect(page.locator("#live")).to_have_text("live", timeout=LIVE)
    page.evaluate("window.notReloaded = true")

    # When a customer's mail, forwarded by Anna, arrives over SMTP
    mail = make_mail("anna@example.com", address, subject=f"Fwd: {HOSTILE}", body=FORWARD)
    send(smtp_server, mail, address, "anna@example.com")

    # Then, without a reload, its card jumps to the top of its column, unread, with the
    # focus reason, and her Incoming counter changes
    top = new_column.first
    expect(top).to_have_attribute("data-card-id", str(target["id"]), timeout=LIVE)
    expect(top.locator(".unread-mark")).to_be_visible()
    expect(top.locator(".reason")).to_have_text("incoming e-mail")
    expect(top.locator(".responsible")).to_contain_text("Anna Martin")
    expect(page.locator("#counter-incoming")).to_have_text("1", timeout=LIVE)
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, "kanban")

    # When she opens the card
    top.locator("a.title").click()
    expect(page.locator("#card-title")).to_have_text("Acme renewal")

    # Then the mail is in its history, marked new, with its original sender and who logged
    # it, and its hostile text shown as text
    entry = page.locator("#history .entry.email")
    expect(entry).to_have_count(1)
    expect(entry.locator(".unread-mark")).to_have_text("New")
    expect(entry.locator(".subject")).to_have_text(HOSTILE)
    expect(entry.locator(".from")).to_have_text("From: John Doe <john.doe@acme.com>")
    expect(entry.locator(".logged-by")).to_contain_text("Anna Martin <anna@example.com>")
    expect(entry.locator(".body")).to_contain_text("<script>document.title='pwned'</script>")
    assert page.locator("#history img, #history script, #history b").count() == 0
    assert page.title() != "pwned"
    # and opening it cleared its unread mark (for the API too)
    assert wait_for(lambda: not kanban_card(api, target["id"])["unread"], what="read")
    expect(page.locator("#open-activities li")).to_have_count(1)

    # When she presses Archive
    page.click("#archive-button")
    # Then the card's archive address is shown (and copied)
    field = page.locator("#archive-address")
    expect(field).to_have_value(re.compile(r"^[^@\s]+@archive\.test$"))
    shown = field.input_value()
    expect(page.locator("#archive-copied")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == shown
    screenshot(page, "card")

    # And the address works: a mail to it lands on this card, live on the open page
    send(
        smtp_server,
        make_mail("anna@example.com", shown, subject="Second"),
        shown,
        "anna@example.com",
    )
    expect(page.locator("#history .entry.email")).to_have_count(2, timeout=LIVE)

    # When she closes the incoming activities, her counter goes back to 0, live
    close = page.locator("#open-activities li button", has_text="Close")
    expect(close).to_have_count(2, timeout=LIVE)
    close.first.click()
    expect(close).to_have_count(1)
    close.first.click()
    expect(page.locator("#counter-incoming")).to_have_text("0", timeout=LIVE)
    expect(page.locator("#open-activities li")).to_have_text("No open activities.")

    # Back on the Kanban, the card has no unread mark
    page.click("#nav-kanban")
    expect(new_column.first).to_have_attribute("data-card-id", str(target["id"]))
    expect(new_column.first).to_have_attribute("data-unread", "false")
    assert page.evaluate("window.notReloaded") is True


@pytest.mark.usefixtures("worker")
def test_an_administrator_sees_inbound_health_and_reprocesses(
    api: httpx.Client, smtp_server: tuple[str, int], page: Page
) -> None:
    # Given a mail rejected because Anna, who forwarded it, is not a CRM user yet
    bob = create_user(api, "bob@example.com", "Bob")
    card = create_card(api, bob["id"])
    address = archive_address(api, card["id"])
    send(smtp_server, make_mail("anna@example.com", address), address, "anna@example.com")
    [item] = wait_for(
        lambda: api.get("/api/inbound?status=rejected").json()["items"], what="rejected"
    )

    # When the administrator signs in and opens Inbound health
    page.goto("/ui/")
    page.fill("#token", "test-token")
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#me")).to_have_text("Administrator")
    # (the administrator's token is no user's: whose counters to show is picked by name)
    expect(page.locator("#counter-incoming")).to_have_count(0)
    page.select_option("#acting-user", label="Bob <bob@example.com>")
    expect(page.locator("#counter-incoming")).to_have_text("0")
    page.click("#nav-inbound")
    page.click('#inbound-tabs a[data-status="rejected"]')

    # Then the rejected input is listed with its reason and a Re-process button
    row = page.locator(f'#inbound-list tr[data-inbound-id="{item["id"]}"]')
    expect(row).to_have_attribute("data-status", "rejected")
    expect(row.locator(".reason")).to_contain_text("anna@example.com is not a CRM user")
    screenshot(page, "inbound")

    # When Anna becomes an administrator of the CRM and the input is re-processed
    anna = create_user(api, "anna@example.com", "Anna Martin")
    api.patch(f"/api/users/{anna['id']}/access", json={"is_admin": True})
    row.locator("button", has_text="Re-process").click()

    # Then it leaves the rejected list and shows as processed, on its card, live
    expect(page.locator("#inbound-list tr[data-status=rejected]")).to_have_count(0, timeout=LIVE)
    expect(page.locator('#inbound-tabs a[data-status="processed"] .count')).to_have_text(
        "1", timeout=LIVE
    )
    page.click('#inbound-tabs a[data-status="processed"]')
    expect(row).to_have_attribute("data-status", "processed")
    expect(row.locator(f'a[href="#/card/{card["id"]}"]')).to_be_visible()


@pytest.mark.usefixtures("worker")
def test_an_unknown_payer_is_attached_from_the_page_and_the_card_shows_the_payment(
    api: httpx.Client, page: Page, clock: FakeClock
) -> None:
    # Given a payment from a phone number no card has: it waits in the unmatched list
    anna = create_user(api, "anna@example.com", "Anna Martin")
    target = card_with_phone(api, anna["id"], "+33 1 40 00 00 00", title="Globex order")
    hook = payment_source(api)
    payment = our_payment("p-web", amount=1999, payer={"phone": "+44 20 7946 0958"})
    assert post_payment(api, hook, payment, clock).status_code == 202
    [item] = wait_for(lambda: api.get("/api/unmatched").json()["items"], what="unmatched")

    # When the administrator finds it in Inbound health and attaches it to the card
    page.goto("/ui/")
    page.fill("#token", "test-token")
    page.click("#sign-in-form button[type=submit]")
    page.click("#nav-inbound")
    page.click('#inbound-tabs a[data-status="unmatched"]')
    row = page.locator(f'#inbound-list tr[data-inbound-id="{item["id"]}"]')
    expect(row.locator(".reason")).not_to_be_empty()
    row.locator("input").fill(str(target["id"]))
    row.locator("button", has_text="Attach to card").click()

    # Then it leaves the unmatched list, processed on that card
    expect(page.locator("#inbound-list tr[data-status=unmatched]")).to_have_count(0)
    page.click('#inbound-tabs a[data-status="processed"]')
    expect(row).to_have_attribute("data-status", "processed")
    row.locator(f'a[href="#/card/{target["id"]}"]').click()

    # And the card page shows the payment: its amount as the server writes it, its status
    expect(page.locator("#card-title")).to_have_text("Globex order")
    entry = page.locator("#history .entry.payment")
    expect(entry).to_have_count(1)
    expect(entry.locator(".subject")).to_have_text("19.99 EUR · succeeded")
    expect(entry).to_contain_text("p-web")
    screenshot(page, "card-payment")


@pytest.mark.usefixtures("worker")
def test_my_forwards_shows_a_refused_forward_with_its_reason_in_plain_words(
    api: httpx.Client, smtp_server: tuple[str, int], page: Page
) -> None:
    # Given Anna, with her token and a card of her own, and Boris's card, which she may not edit
    anna = create_user(api, "anna@example.com", "Anna Martin")
    boris = create_user(api, "boris@example.com", "Boris Petit")
    token = api.post(f"/api/users/{anna['id']}/tokens", json={"name": "browser"}).json()["token"]
    own = archive_address(api, create_card(api, anna["id"], title="Acme renewal")["id"])
    theirs = archive_address(api, create_card(api, boris["id"], title="Globex pilot")["id"])

    # When she signs in and opens My forwards, there is nothing to report
    page.goto("/ui/")
    page.fill("#token", token)
    page.click("#sign-in-form button[type=submit]")
    page.click("#nav-forwards")
    expect(page.locator("#forwards-empty")).to_contain_text("Nothing to report")

    # When she forwards a customer's mail to Boris's card, one with two From lines to her
    # own card, and one that lands on her card
    refused = make_mail("anna@example.com", theirs, subject=f"Fwd: {HOSTILE}", body=FORWARD)
    send(smtp_server, refused, theirs, "anna@example.com")
    send(smtp_server, TWO_FROMS % own.encode(), own, "anna@example.com")
    send(smtp_server, make_mail("anna@example.com", own, subject="Fine"), own, "anna@example.com")
    wait_for(
        lambda: (
            len(api.get("/api/inbound?status=rejected").json()["items"]) == 2
            and api.get("/api/inbound?status=processed").json()["items"]
        ),
        what="two refusals and one mail on its card",
    )

    # Then My forwards lists the two refusals, newest first, in plain words, with the archive
    # address and the subject shown as text
    page.click("#nav-kanban")
    page.click("#nav-forwards")
    entries = page.locator("#forwards-list .entry.forward")
    expect(entries).to_have_count(2)
    expect(entries.locator(".reason-text")).to_have_text(
        [
            "the sender (From line) could not be read: it must be exactly one address",
            "you are not allowed to edit this card",
        ]
    )
    first_refused = entries.nth(1)
    expect(first_refused).to_have_attribute("data-status", "rejected")
    expect(first_refused.locator(".type")).to_have_text("Refused")
    expect(first_refused.locator(".subject")).to_have_text(f"Subject: Fwd: {HOSTILE}")
    expect(first_refused.locator(".address")).to_have_text(theirs)
    expect(first_refused.locator("time")).not_to_be_empty()
    assert page.locator("#forwards-list img, #forwards-list b, #forwards-list script").count() == 0
    assert page.title() != "pwned"
    screenshot(page, "my-forwards")

    # And the filter shows only what is asked for
    page.click('#forwards-tabs a[data-status="held"]')
    expect(page.locator("#forwards-empty")).to_have_text("No held mail.")


def test_the_api_docs_render_with_the_network_closed(api: httpx.Client, page: Page) -> None:
    # Given a browser that can reach the app and nothing else (no CDN, no validator)
    aborted = close_network(page, str(api.base_url))
    refused: list[str] = []  # what the page's Content-Security-Policy blocked, if anything
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )

    # When it opens /docs, Swagger UI renders the operations, hooks included
    page.goto("/docs")
    expect(page.locator("#swagger-ui .opblock").first).to_be_visible()
    paths = page.locator("#swagger-ui .opblock-summary-path").all_inner_texts()
    assert len(paths) >= 20
    assert any(path.replace("\u200b", "") == "/hooks/calllog/{source_id}" for path in paths)
    expect(page.locator("#swagger-ui .info .title")).to_contain_text("CRM ingest")
    screenshot(page, "api-docs")
    assert aborted == [] and refused == []

    # And ReDoc, at /redoc, renders them too; its policy keeps it from fetching Redocly's
    # logo from Redocly's CDN (the only thing it would load from elsewhere)
    page.goto("/redoc")
    expect(page.get_by_text("/hooks/calllog/{source_id}").first).to_be_attached()
    screenshot(page, "api-redoc")
    assert aborted == []
    assert all("image 'https://cdn.redoc.ly/" in text for text in refused), refused

    # The page's icon answers, and the docs' headers keep their policy
    icon = api.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/vnd.microsoft.icon"
    assert icon.content.startswith(b"\x00\x00\x01\x00")
    docs = api.get("/docs")
    assert "default-src 'self'" in docs.headers["content-security-policy"]
    assert "cdn" not in docs.text.lower()

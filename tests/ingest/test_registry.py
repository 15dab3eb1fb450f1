"""The registry (`ingest.registry`): what the hooks, actors, source API, history filters,
activity types and page labels read; and what it refuses to be built from."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ingest.calllog import calllog
from ingest.chat import telegram
from ingest.mailbox import processing as email
from ingest.provider import Medium
from ingest.registry import PROVIDERS, REGISTRY, WEBHOOK_CHANNELS, Registry


def test_every_provider_has_its_channel_hook_and_history_entries() -> None:
    assert set(REGISTRY.channels) == {"email", "call", "chat", "payment"}
    assert {h.hook for h in REGISTRY.hooks} == {"calllog", "chat", "payments"}
    for provider in PROVIDERS:
        path = REGISTRY.hook_path(provider.kind, 7)
        assert path.endswith("/7") and path.startswith("/hooks/"), provider.kind
        channel = REGISTRY.channels[provider.channel]
        assert provider.kind in channel.providers  # type: ignore[attr-defined]
        for medium in provider.media:
            assert medium.type in REGISTRY.history_filters()[medium.filter]
            assert REGISTRY.type_labels()[medium.type] == medium.label
    # a new provider's history type is a filter, a label and a default activity type
    assert REGISTRY.history_filters()["telegram"] == ("telegram",)
    assert "telegram" in REGISTRY.activity_types()
    # e-mail's own entries, and the CRM's own filters, are there too; a bounce is no activity
    assert REGISTRY.history_filters()["email"] == ("email", "bounce")
    assert REGISTRY.history_filters()["tasks"] == ("task_closed", "task_reopened")
    assert "bounce" not in REGISTRY.activity_types()
    assert "meeting" in REGISTRY.activity_types()
    assert set(REGISTRY.attachable()) == {"call", "chat", "payment"}


def test_a_registry_refuses_two_kinds_alike_a_missing_channel_and_a_type_told_twice() -> None:
    with pytest.raises(ValueError, match="share a source kind"):
        Registry.build((*PROVIDERS, calllog.PROVIDER), WEBHOOK_CHANNELS, email.CHANNEL)

    class Lost(telegram.Telegram):
        kind = "lost"
        channel = "fax"

    with pytest.raises(ValueError, match="provider lost: no webhook channel fax"):
        Registry.build((*PROVIDERS, Lost()), WEBHOOK_CHANNELS, email.CHANNEL)

    class Clash(telegram.Telegram):
        kind = "clash"
        media = (replace(telegram.TELEGRAM, label="Telegram!"),)

    with pytest.raises(ValueError, match="telegram is described twice"):
        Registry.build((*PROVIDERS, Clash()), WEBHOOK_CHANNELS, email.CHANNEL).media()


def test_the_registry_cannot_be_changed_in_place() -> None:
    with pytest.raises(TypeError):
        REGISTRY.providers["x"] = calllog.PROVIDER  # type: ignore[index]
    assert isinstance(telegram.TELEGRAM, Medium)

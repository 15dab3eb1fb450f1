"""Every channel and provider the service knows, in one place: the hook routes, the worker
actors, the source API, the history filters, the activity types and the web page's labels
are all read from here. A new provider is one module plus one line in `PROVIDERS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from crm_core import company
from crm_core.history import OWN_FILTERS
from ingest.calllog import calllog, twilio_voice
from ingest.calllog import processing as calls
from ingest.chat import processing as chat
from ingest.chat import telegram, twilio, whatsapp, widget
from ingest.mailbox import processing as email
from ingest.payments import own, stripe
from ingest.payments import processing as payments
from ingest.provider import Channel, Medium, Provider
from ingest.webhook_channel import WebhookChannel

PROVIDERS: tuple[Provider, ...] = (
    calllog.PROVIDER,
    twilio_voice.PROVIDER,
    widget.PROVIDER,
    whatsapp.PROVIDER,
    twilio.PROVIDER,
    telegram.PROVIDER,
    stripe.PROVIDER,
    own.PROVIDER,
)
WEBHOOK_CHANNELS: tuple[WebhookChannel, ...] = (calls.CHANNEL, chat.CHANNEL, payments.CHANNEL)


@dataclass(frozen=True)
class Registry:
    providers: Mapping[str, Provider]  # by source kind
    channels: Mapping[str, Channel]  # by name: email, call, chat, payment
    hooks: tuple[WebhookChannel, ...]

    @classmethod
    def build(
        cls, providers: tuple[Provider, ...], hooks: tuple[WebhookChannel, ...], mail: Channel
    ) -> Registry:
        by_kind = {p.kind: p for p in providers}
        if len(by_kind) != len(providers):
            raise ValueError("two providers share a source kind")
        fed = {h.name for h in hooks}
        for provider in providers:
            if provider.channel not in fed:
                raise ValueError(f"provider {provider.kind}: no webhook channel {provider.channel}")
        wired = tuple(
            h.with_providers(
                MappingProxyType({p.kind: p for p in providers if p.channel == h.name})
            )
            for h in hooks
        )
        channels: dict[str, Channel] = {mail.name: mail}
        channels.update({h.name: h for h in wired})
        return cls(MappingProxyType(by_kind), MappingProxyType(channels), wired)

    def provider(self, kind: str) -> Provider:
        return self.providers[kind]

    def hook_path(self, kind: str, source_id: int) -> str:
        channel = self.channels[self.providers[kind].channel]
        assert isinstance(channel, WebhookChannel)
        return f"/hooks/{channel.hook}/{source_id}"

    def attachable(self) -> dict[str, Channel]:
        """The channels whose unmatched inputs a person may put on a card."""
        return {h.name: h for h in self.hooks}

    def media(self) -> list[Medium]:
        """Every kind of history entry the channels write, each once, in registry order."""
        seen: dict[str, Medium] = {}
        every = [m for c in self.channels.values() for m in c.media]
        every += [m for p in self.providers.values() for m in p.media]
        for medium in every:
            if seen.setdefault(medium.type, medium) != medium:
                raise ValueError(f"history type {medium.type} is described twice, differently")
        return list(seen.values())

    def history_filters(self) -> dict[str, tuple[str, ...]]:
        """Filter name -> the history entry types it shows."""
        filters: dict[str, tuple[str, ...]] = {}
        for medium in self.media():
            filters[medium.filter] = (*filters.get(medium.filter, ()), medium.type)
        for name, _label, types in OWN_FILTERS:
            filters[name] = types
        return filters

    def filter_labels(self) -> dict[str, str]:
        labels = {m.filter: m.filter_label for m in self.media()}
        labels.update({name: label for name, label, _types in OWN_FILTERS})
        return labels

    def type_labels(self) -> dict[str, str]:
        """History entry type -> its label on the page (the channels' types)."""
        return {m.type: m.label for m in self.media()}

    def activity_types(self) -> list[str]:
        """The default activity types: every medium that makes activities, then our own."""
        return [m.type for m in self.media() if m.activity] + list(company.DEFAULT_TYPES)


REGISTRY = Registry.build(PROVIDERS, WEBHOOK_CHANNELS, email.CHANNEL)

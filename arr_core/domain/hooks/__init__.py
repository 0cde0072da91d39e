"""Inbound webhooks, the pure part: who may call (:mod:`.signatures`), what each sender says (:mod:`.senders`) and
what the app does about it (:mod:`.rules`). No HTTP, no storage, no clock: the hook routes and services bring them."""

__all__ = ["rules", "senders", "signatures"]

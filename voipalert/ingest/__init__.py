"""Triggers: the HTTP API and webhooks, the SMTP listener and the IMAP poller.

Every edge does the same four things (docs/architecture.md §9): validate into an event, commit it
to the store, wake the engine, reply. None of them ever dials.
"""

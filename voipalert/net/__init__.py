"""The asyncio adapters: the only modules that own sockets (docs/architecture.md §1, §3)."""

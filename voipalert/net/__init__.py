"""The asyncio adapters: the only modules that own sockets (STYLE.md §3)."""

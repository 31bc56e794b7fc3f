"""The sans-IO SIP core: no sockets, no asyncio, no clock reads (STYLE.md §3)."""

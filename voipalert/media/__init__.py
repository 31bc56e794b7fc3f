"""Sans-IO media: G.711, the RTP wire format, RFC 4733 events and the in-band DTMF detector.

Nothing here opens a socket or reads a clock; time is an argument (docs/architecture.md §3).
"""

"""voipalert: turn technical events into phone calls through your own SIP PBX."""

__version__ = "0.1.0"

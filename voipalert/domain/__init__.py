"""Pure on-call and escalation decisions: no I/O, no clock reads, time is an argument."""

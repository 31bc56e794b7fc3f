"""The rota's file formats, apart from the decisions made on the rota (pure).

In: a rota file (YAML or TOML) to a validated ``domain.rota.Rota`` (``parse``, which reads
a located tree from ``source`` through the typed readers of ``reader``), a CSV of shifts to
overrides (``shifts_csv``). Out: a ``Rota`` back to rota-file YAML (``dump``) and shifts as an
iCalendar feed (``ics``). The model is ``domain.rota``; who is on call is ``domain.oncall``.
This package sits one layer above ``domain`` (docs/architecture.md §2).
"""

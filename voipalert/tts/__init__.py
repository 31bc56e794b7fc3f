"""Speech: alert text → words a person hears on the phone, rendered locally with Piper.

Pure modules (no I/O): ``voices`` (manifest and inventory values), ``text`` (sanitising),
``pronounce``/``lexicon`` (making technical text speakable), ``templates`` (Jinja2 sandbox and
the prompt catalog model), ``audio`` (telephone DSP), ``prompt`` (the rendered value and its
cache key), ``config`` and ``errors``. I/O modules: ``inventory`` (reads voices/ and
checksums), ``render`` (Piper in a worker pool), ``cache`` (prompt files), ``wav``,
``catalog`` (package data) and ``speech`` (the façade the rest of voipalert uses).
"""

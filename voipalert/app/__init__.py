"""The composition root: ``config`` maps the settings onto each component's own config,
``serve`` wires store, engine, phone, speech, HTTP and e-mail into one process."""

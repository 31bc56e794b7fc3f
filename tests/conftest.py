"""Shared pytest configuration. Fixtures for real peers live beside the tests that use them
(``tests/testbed_fixtures.py`` for the SIP testbed)."""

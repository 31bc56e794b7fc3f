"""The typed keys of the HTTP app's state (aiohttp ``web.AppKey``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from voipalert.clock import Clock
from voipalert.ingest.auth import Authenticator
from voipalert.ingest.config import IngestConfig
from voipalert.ingest.health import PhonePath, SipState, TrunkSource
from voipalert.ingest.intake import Intake
from voipalert.ingest.log_budget import LogBudget
from voipalert.ingest.metrics import IngestMetrics
from voipalert.store import Store
from voipalert.store.api_reads import ApiReads

STORE = web.AppKey("store", Store)
API_READS = web.AppKey("api_reads", ApiReads)
INTAKE = web.AppKey("intake", Intake)
AUTH = web.AppKey("auth", Authenticator)
METRICS = web.AppKey("metrics", IngestMetrics)
CONFIG = web.AppKey("config", IngestConfig)
CLOCK = web.AppKey("clock", Clock)
REJECTION_LOG = web.AppKey("rejection_log", LogBudget)
WAKE: web.AppKey[Callable[[], None]] = web.AppKey("wake")
SIP_STATE: web.AppKey[Callable[[], SipState]] = web.AppKey("sip_state")
# The self-test's view of the phone path (app.selftest sets it; default: not monitored).
PHONE_PATH: web.AppKey[Callable[[], PhonePath]] = web.AppKey("phone_path")
# Each SIP trunk's state (app.trunks sets it; default: none listed).
TRUNKS: web.AppKey[TrunkSource] = web.AppKey("trunks")
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")

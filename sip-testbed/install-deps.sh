#!/usr/bin/env bash
# Debian/Ubuntu packages of the SIP testbed (and so of `voipalert demo`): Kamailio (registrar
# + proxy), baresip (phone bots), and python3-venv for the project's virtual environment.
# With --tests, also what the test suite needs: multimon-ng (an independent DTMF decoder used
# as a cross-check), sox, and dovecot-imapd (the IMAP server the e-mail poller's tests run
# against; the tests start their own instance, on loopback), python3-seccomp and systemd (the
# deploy tests rebuild the systemd unit's seccomp sandbox with libseccomp and run
# `systemd-analyze verify`; systemd need not be PID 1 for that), dnsmasq-base (the DNS
# server the RFC 3263 tests start on loopback: the binary only, no system service),
# prometheus-alertmanager (the silence tests start their own, on loopback), chromium
# (the web console's browser tests drive it with Playwright; no browser is downloaded),
# postgresql (15: the store's contract tests start their own server with initdb/pg_ctl in a
# temporary directory, as the postgres user the package creates, on 127.0.0.1 only),
# radicale (the CalDAV server the rota-source tests start on loopback, with a temporary
# storage folder: no system service), sip-tester (SIPp: the callee of the 100rel/PRACK
# and session-timer tests, run with the scenarios of tests/data/sipp/ on loopback, and the
# phones of the capacity benchmarks, docs/capacity.md), and
# kamailio-tls-modules (Kamailio's TLS module: the testbed listens on TLS when a bot
# registers over TLS, for the SIP/TLS + SRTP tests).
set -euo pipefail
packages=(kamailio baresip-core python3-venv iproute2 procps ca-certificates)
if [[ "${1:-}" == "--tests" ]]; then
    packages+=(multimon-ng sox dovecot-imapd openssl python3-seccomp systemd dnsmasq-base
        prometheus-alertmanager chromium postgresql radicale sip-tester kamailio-tls-modules)
fi
if [[ $(id -u) -ne 0 ]]; then
    sudo=(sudo)
else
    sudo=()
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"

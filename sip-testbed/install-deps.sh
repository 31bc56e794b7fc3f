#!/usr/bin/env bash
# Debian/Ubuntu packages the SIP testbed and the test suite need: Kamailio (registrar +
# proxy), baresip (phone bots), multimon-ng (an independent DTMF decoder used as a
# cross-check), sox, dovecot-imapd (the IMAP server the e-mail poller's tests run against),
# and python3-venv for the project's virtual environment.
set -euo pipefail
packages=(kamailio baresip-core multimon-ng sox dovecot-imapd python3-venv iproute2 procps
          ca-certificates)
if [[ $(id -u) -ne 0 ]]; then
    sudo=(sudo)
else
    sudo=()
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"

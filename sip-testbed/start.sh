#!/usr/bin/env bash
# Start the SIP testbed (Kamailio + baresip bots) in one run directory; prints the accounts.
# Options as `testbed.py start`: --dir DIR, --port PORT, --bot NAME=MODE[:DIGIT[:DELAY]]...
exec python3 "$(dirname "$0")/testbed.py" start "$@"

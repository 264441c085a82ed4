#!/usr/bin/env bash
# The servers the bridge's tests start (tests/servers.py): Debian's redis-server and PostgreSQL's
# initdb/pg_ctl. Installs the Debian packages redis-server and postgresql when a binary is missing
# (as root, or through sudo); says what to install and fails when it cannot.
set -euo pipefail

have_postgres() {
    command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
have_postgres || missing+=(postgresql)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "ensure_servers: installing ${missing[*]} (the bridge's tests start them on 127.0.0.1)"
if [ "$(id -u)" -eq 0 ]; then
    run=()
elif command -v sudo >/dev/null 2>&1; then
    run=(sudo)
else
    echo "ensure_servers: ${missing[*]} missing and no root: run 'apt-get install -y ${missing[*]}' as root" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_servers: no apt-get here: install ${missing[*]} with this system's package manager" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${run[@]}" apt-get update -qq
# policy-rc.d keeps the packages from starting system-wide servers: the tests start their own
"${run[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
command -v redis-server >/dev/null 2>&1 || { echo "ensure_servers: redis-server still missing" >&2; exit 1; }
have_postgres || { echo "ensure_servers: initdb/pg_ctl still missing" >&2; exit 1; }

#!/usr/bin/env bash
# Install the Debian packages the build and the tests need.
# Idempotent: asks dpkg first, and touches apt only when something is missing.
set -euo pipefail

PACKAGES=(
    nginx nginx-dev
    libjwt-dev libhiredis-dev libssl-dev libpcre3-dev zlib1g-dev
    redis-server redis-tools
    build-essential perl wrk
)

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "deps: installing ${missing[*]}" >&2

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The Debian nginx package starts a system nginx and the redis-server package
# a system redis; the tests run their own on free ports, so these are not needed
# but are harmless. Nothing else to do.

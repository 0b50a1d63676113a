#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, when missing. Idempotent.
set -euo pipefail
packages=(nginx libb64-0d openssl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run as root or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# nginx's package starts a service we do not want listening on :80.
if command -v nginx >/dev/null; then nginx -s quit 2>/dev/null || true; fi

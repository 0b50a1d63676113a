#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, when missing. Idempotent.
set -euo pipefail
# docker.io docker-compose debootstrap: the e2e stage (tests/e2e) builds and runs the containers.
# prometheus: its promtool checks deploy/prometheus/ (tests/unit/test_prometheus_config.py).
# chromium chromium-driver: the page's browser tests (tests/integration/test_web_page.py), headless.
# dataset-fashion-mnist: the genuine Fashion-MNIST files, Debian's offline way to them that the trainer
# supports (tests/unit/test_trainer_fashion.py reads them; the Fashion-MNIST tests use them when
# $FASHION_MNIST_DATA_DIR is unset).
packages=(nginx libb64-0d openssl docker.io docker-compose debootstrap prometheus chromium chromium-driver
  dataset-fashion-mnist)
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
# Likewise a freshly installed Prometheus, where an init system started it (the tests need only promtool).
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus.service 2>/dev/null || true
fi

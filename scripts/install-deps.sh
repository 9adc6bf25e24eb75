#!/usr/bin/env bash
# Installs the Debian packages demolish builds and tests with (README.md says
# why each is there). Skips apt-get when everything is already installed.
set -euo pipefail
PKGS=(build-essential cmake pkg-config
      libopenblas-dev libpcre2-dev libcjson-dev libutf8proc-dev nettle-dev zlib1g-dev
      libpython3.11-stdlib linux-doc-6.1
      python3 python3-torch python3-numpy python3-scipy python3-regex)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

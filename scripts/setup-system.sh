#!/usr/bin/env bash
# Installs the Debian packages consortia needs, and nothing else. Idempotent and quick when
# everything is present: it asks apt only for what `dpkg -s` says is missing.
# Called by the Makefile before the virtual environment is created.
set -euo pipefail

# python3-venv: `python -m venv`; build-essential and python3-dev: a wheel that has to compile;
# libssl-dev: the OpenSSL headers the state tree's C module compiles against (SHA-256);
# openssl: the `openssl` command operators use to inspect certificates (docs/operations.md);
# postgresql: the database `consortia mirror` writes into, and the throwaway servers its
# tests start (initdb, pg_ctl; docs/mirror.md).
packages=(build-essential python3-dev openssl libssl-dev ca-certificates postgresql)

missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "setup-system: missing Debian packages: ${missing[*]}; run as root or install them" >&2
    exit 1
  fi
else
  SUDO=
fi
echo "setup-system: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

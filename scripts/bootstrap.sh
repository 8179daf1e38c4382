#!/usr/bin/env bash
# Installs everything imapvm needs on Debian 12, idempotently and quickly when all is present:
# Debian packages through apt-get (only those missing) and a virtualenv in .venv with the package.
# Usage: scripts/bootstrap.sh [server|test]   ("test" adds the IMAP servers and SIP peers the tests run)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROFILE=${1:-server}

# Debian packages. The server needs Python (and gcc with Python's headers for its one C module,
# the RTP fast path), the prompts and espeak-ng (for prompts the set lacks); the tests also need
# the real IMAP servers and SIP peers they start.
PKGS=(python3 python3-venv python3-pip python3-dev gcc ca-certificates openssl asterisk-core-sounds-en-wav espeak-ng sox)
PKGS+=(asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav
       asterisk-core-sounds-ru-wav)  # issue 16: the menus in Spanish, French, Italian, Russian
PKGS+=(asterisk-core-sounds-en-g722)  # issue 15: wideband prompts for G.722 calls
if [ "$PROFILE" = test ]; then
  PKGS+=(dovecot-imapd cyrus-common sasl2-bin cyrus-clients baresip sip-tester libgsm-tools
         krb5-kdc krb5-admin-server krb5-user libkrb5-dev dovecot-gssapi)
  PKGS+=(fail2ban)  # issue 12: fail2ban-regex checks contrib/fail2ban's filter on real log lines
  PKGS+=(kamailio kamailio-presence-modules kamailio-sqlite-modules sqlite3)  # issue 14: the SIP edge of several nodes (dispatcher, presence_mwi)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Cyrus: the cyrus-imapd package conflicts with dovecot-imapd (both provide imap-server), so the
# tests take its imapd binary out of the .deb instead of installing it (test-infra.md section 2).
if [ "$PROFILE" = test ] && [ ! -x "$ROOT/.cache/cyrus/usr/lib/cyrus/bin/imapd" ]; then
  echo "bootstrap: unpacking Cyrus imapd from cyrus-imapd.deb" >&2
  mkdir -p "$ROOT/.cache/cyrus-deb" "$ROOT/.cache/cyrus"; chmod 777 "$ROOT/.cache/cyrus-deb"
  (cd "$ROOT/.cache/cyrus-deb" && rm -f cyrus-imapd_*.deb &&
   { apt-get download -qq cyrus-imapd >/dev/null 2>&1 ||
     { apt-get update -qq && apt-get download -qq cyrus-imapd >/dev/null; }; })
  dpkg-deb -x "$ROOT"/.cache/cyrus-deb/cyrus-imapd_*.deb "$ROOT/.cache/cyrus"
fi

# Python: a venv with the package (editable, its C module built in place) and, for tests, the
# test extra. Reinstalled only when pyproject.toml, setup.py or the C source changes.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
HASH=$(cat pyproject.toml setup.py src/imapvm/telephony/rtp/_fastpath.c | sha256sum | cut -c1-16)
STAMP=.venv/.imapvm-$PROFILE-$HASH
# The test profile installs everything the server profile does.
if [ ! -f "$STAMP" ] && ! { [ "$PROFILE" = server ] && [ -f ".venv/.imapvm-test-$HASH" ]; }; then
  echo "bootstrap: installing Python packages into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  if [ "$PROFILE" = test ]; then
    .venv/bin/python -m pip install -q -e ".[test]"
  else
    .venv/bin/python -m pip install -q -e .
  fi
  rm -f .venv/.imapvm-"$PROFILE"-*
  touch "$STAMP"
fi

# Prompts the installed sound set lacks, spoken by espeak-ng into the venv (fast when none are).
.venv/bin/python -m imapvm.audio.synth >/dev/null

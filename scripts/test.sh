#!/usr/bin/env bash
# The README's test command. On a fresh Debian machine it installs what the
# tests need (Dovecot, PostgreSQL and Postfix from Debian, Python packages into .venv),
# then runs the linters, the type checker and the whole suite against SQLite
# and against a throwaway PostgreSQL cluster. The tests start their own
# servers on 127.0.0.1; nothing on the machine is reconfigured.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
[ -x /usr/sbin/dovecot ] || missing+=(dovecot-imapd)
[ -x /usr/lib/dovecot/lmtp ] || missing+=(dovecot-lmtpd)
[ -x /usr/lib/dovecot/pop3 ] || missing+=(dovecot-pop3d)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
[ -x /usr/sbin/postfix ] || missing+=(postfix)
python3 -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  # Postfix asks how it should send mail; "Local only" relays nothing. The
  # package's own service is left alone: the tests run throwaway instances.
  echo "postfix postfix/main_mailer_type select Local only" | as_root debconf-set-selections
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
export PATH="$PWD/.venv/bin:$PATH"

ruff check deskctl migrations tests bench
ruff format --check deskctl migrations tests bench
mypy

# Both passes always run, so one failure never hides the other half of the
# results; the exit status is non-zero if either failed.
status=0
echo "== tests on SQLite"
python -m pytest -n 2 -q "$@" || status=$?
echo "== tests on PostgreSQL"
DESKCTL_TEST_DB=postgres python -m pytest -n 2 -q "$@" || status=$?
[ "$status" = 0 ] || echo "== some tests failed (see above)"
exit "$status"

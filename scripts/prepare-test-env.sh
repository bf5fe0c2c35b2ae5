#!/usr/bin/env bash
# Prepares the machine's side of `make test`: Debian's Chromium (review-UI tests drive it through
# Playwright; no browser is ever downloaded), Java 17 (Spark), and Redis and PostgreSQL running on
# their standard local ports. `make test` runs it first, and so does `.ci/run`; each piece already
# there costs nothing, so a prepared machine sees a no-op.
#
# A piece it cannot provide (not root and no password-less sudo, no apt-get, no network) is named
# with the command that provides it. Under CI (CI=true) that fails the run at once; on a developer
# machine the run goes on and the tests that need the piece fail naming it.
#
# Usage: scripts/prepare-test-env.sh [--check]   (--check: only report, install and start nothing)
set -uo pipefail

check_only=false
case "${1:-}" in
  --check) check_only=true ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
strict=false
[ "${CI:-}" = true ] && strict=true

chromium=${DISTILLGUARD_CHROMIUM:-/usr/bin/chromium}
java=${DISTILLGUARD_JAVA:-java}
redis_port=${DISTILLGUARD_REDIS_PORT:-6379}
pg_port=${DISTILLGUARD_PG_PORT:-5432}

missing=()
say() { printf 'prepare-test-env: %s\n' "$*" >&2; }

as_root() {  # root, or sudo without a password, or status 126 and nothing run
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    return 126
  fi
}

apt_updated=false
apt_install() {  # package...; apt-get update once first (a fresh machine has no package lists)
  command -v apt-get >/dev/null 2>&1 || { say "no apt-get here to install $*"; return 1; }
  as_root true || { say "not root and no password-less sudo: cannot install $*"; return 1; }
  if ! $apt_updated; then
    as_root apt-get update -q || { say "apt-get update failed (not root? no network?)"; return 1; }
    apt_updated=true
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

listening() {  # host port: true when something accepts TCP connections there
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() {  # seconds command...: true once the command succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.2
  done
}

# ---- Chromium ---------------------------------------------------------------------------------
if [ ! -x "$chromium" ]; then
  if ! $check_only; then
    say "installing Debian's chromium (missing: $chromium)"
    apt_install chromium
  fi
  [ -x "$chromium" ] ||
    missing+=("Chromium at $chromium (review-UI tests): as root, apt-get update && apt-get install -y chromium")
fi

# ---- Java 17, for Spark -----------------------------------------------------------------------
if ! command -v "$java" >/dev/null 2>&1; then
  if ! $check_only; then
    say "installing Java 17 (missing: $java)"
    apt_install openjdk-17-jre-headless
  fi
  command -v "$java" >/dev/null 2>&1 ||
    missing+=("Java ($java, for Spark): as root, apt-get update && apt-get install -y openjdk-17-jre-headless")
fi

# ---- Redis ------------------------------------------------------------------------------------
if ! listening 127.0.0.1 "$redis_port"; then
  if ! $check_only && command -v redis-server >/dev/null 2>&1; then
    say "starting Redis on 127.0.0.1:$redis_port"
    if [ "$(id -u)" = 0 ] && [ -d /var/lib/redis ]; then
      mkdir -p /var/log/redis
      redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$redis_port" --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    else  # Redis runs as any user; keep nothing on disk, log beside the temp files
      redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
        --dir "${TMPDIR:-/tmp}" --logfile "${TMPDIR:-/tmp}/distillguard-redis.log"
    fi
    wait_for 5 listening 127.0.0.1 "$redis_port"
  fi
  listening 127.0.0.1 "$redis_port" ||
    missing+=("Redis on 127.0.0.1:$redis_port (gateway replica and ban-list tests): install redis-server, then redis-server --daemonize yes --port $redis_port --save ''")
fi

# ---- PostgreSQL -------------------------------------------------------------------------------
if ! listening 127.0.0.1 "$pg_port"; then
  if ! $check_only && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    say "starting PostgreSQL $version (cluster main)"
    if as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start; then
      wait_for 15 listening 127.0.0.1 "$pg_port"
    else
      say "could not start PostgreSQL $version (needs root or the postgres user)"
    fi
  fi
  listening 127.0.0.1 "$pg_port" ||
    missing+=("PostgreSQL on 127.0.0.1:$pg_port, trust auth (case-store tests): as root, pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start; or set DISTILLGUARD_NO_POSTGRES=1 to skip those tests")
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
say "the tests need what this machine does not have:"
for piece in "${missing[@]}"; do
  say "  - $piece"
done
if $strict || $check_only; then
  exit 1
fi
say "going on: the tests that need these will fail, naming them"
exit 0

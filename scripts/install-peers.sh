#!/usr/bin/env bash
# Installs the real peers the integration tests run: nginx (the CDN), Prometheus and
# Alertmanager (Debian), aiosmtpd (PyPI) and the Node OIDC/OAuth servers in peers/node
# (npm, from the committed package-lock.json); openssl (a self-signed TLS server) and
# util-linux (prlimit) for the fault matrix.
#
# Idempotent: each step is skipped when its result is already there, so a warm run takes
# well under a second. Quiet on success; on failure it prints the full log and exits
# non-zero. It never starts a system service: Debian's nginx postinst would start a
# system-wide nginx on port 80, so a policy-rc.d that denies starts is put in place for
# the duration of the apt step (unless one is already there).
#
# It does not start any peer; tests start their own on ephemeral 127.0.0.1 ports.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
apt_packages=(nginx prometheus prometheus-alertmanager chromium openssl util-linux)
pip_packages=("aiosmtpd==1.4.6")
node_dir="$repo_root/peers/node"

log=$(mktemp "${TMPDIR:-/tmp}/keycanary-install-peers.XXXXXX.log")
policy_rc_d_created=""

cleanup() {
  local rc=$?
  if [[ -n "$policy_rc_d_created" ]]; then
    rm -f /usr/sbin/policy-rc.d
  fi
  if [[ $rc -ne 0 ]]; then
    echo "install-peers: FAILED (exit $rc) — full log follows ($log)" >&2
    cat "$log" >&2
    echo "install-peers: FAILED (exit $rc)" >&2
  else
    rm -f "$log"
  fi
  exit "$rc"
}
trap cleanup EXIT

step() { echo "== $*" >>"$log"; }

as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  else
    sudo -n "$@"
  fi
}

# --- Debian packages ----------------------------------------------------------------
missing_apt=()
for pkg in "${apt_packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing_apt+=("$pkg")
  fi
done

if [[ ${#missing_apt[@]} -gt 0 ]]; then
  step "apt: installing ${missing_apt[*]}"
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    # Deny service starts while dpkg runs (exit 101 = action forbidden).
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod 755 /usr/sbin/policy-rc.d
    policy_rc_d_created=1
  fi
  nginx_was_running=""
  if [[ -s /run/nginx.pid ]] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
    nginx_was_running=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing_apt[@]}" >>"$log" 2>&1
  # Belt and braces: if the package still managed to start a system nginx, stop that one
  # (only the one started by this install, found by its pid file).
  if [[ -z "$nginx_was_running" && -s /run/nginx.pid ]]; then
    pid=$(cat /run/nginx.pid)
    if kill -0 "$pid" 2>/dev/null; then
      step "apt: stopping the system nginx (pid $pid) the package started"
      as_root kill -QUIT "$pid" >>"$log" 2>&1 || true
    fi
  fi
fi

for bin in nginx prometheus promtool prometheus-alertmanager amtool; do
  if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$bin" >/dev/null; then
    step "missing after install: $bin"
    exit 1
  fi
done

# --- PyPI -------------------------------------------------------------------------------
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  step "pip: installing ${pip_packages[*]}"
  if ! python3 -m pip install -q --disable-pip-version-check "${pip_packages[@]}" >>"$log" 2>&1; then
    # Debian's own python3 refuses pip installs (PEP 668); this is a throwaway test machine.
    step "pip: retrying with --break-system-packages"
    python3 -m pip install -q --disable-pip-version-check --break-system-packages \
      "${pip_packages[@]}" >>"$log" 2>&1
  fi
  python3 -c 'import aiosmtpd' >>"$log" 2>&1
fi

# --- npm (peers/node) ---------------------------------------------------------------
# node_modules/.keycanary-lock is a copy of the lock it was installed from; a changed
# lock (or a missing module) triggers a clean `npm ci`.
stamp="$node_dir/node_modules/.keycanary-lock"
if [[ ! -f "$node_dir/package-lock.json" ]]; then
  step "npm: no package-lock.json, running npm install to create one"
  (cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error) >>"$log" 2>&1
  cp "$node_dir/package-lock.json" "$stamp"
elif ! cmp -s "$node_dir/package-lock.json" "$stamp" \
  || [[ ! -d "$node_dir/node_modules/oidc-provider" || ! -d "$node_dir/node_modules/oauth2-mock-server" ]]; then
  step "npm: npm ci in $node_dir"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error) >>"$log" 2>&1
  cp "$node_dir/package-lock.json" "$stamp"
fi

#!/usr/bin/env bash
# Install what building and testing pgsluice needs on Debian 12, only what is
# missing: PostgreSQL 15 (server, psql, pgbench), tools the tests and the demo
# call, and the rustfmt/clippy components. Safe to run again and again.
set -euo pipefail

# postgresql-15 brings initdb, postgres and pgbench; postgresql-client-15 psql and
# pg_isready; procps (ps) and iproute2 (ss) help inspect a run;
# python3-psycopg is for ad-hoc client checks; make runs the targets; pgbouncer
# (Debian's 1.18) is the reference the differential tests compare against;
# openssl makes the version 1 certificate a TLS test serves, as PostgreSQL's
# documentation makes one; libpam0g-dev is what pgsluice links with for
# auth_type = pam.
packages=(postgresql-15 postgresql-client-15 python3-psycopg procps iproute2 make systemd pgbouncer dbus openssl libpam0g-dev)
# man-db and groff-base check the man pages (make man-check); lintian checks the
# package (make deb); debootstrap and systemd-container boot a Debian 12
# container for the end-to-end test (make e2e).
packages+=(man-db groff-base lintian debootstrap systemd-container)

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "error: need root (or sudo) to install: ${missing[*]}" >&2
            exit 1
        fi
    fi
    # The package lists may be missing or stale on a fresh machine: update once.
    "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "system packages: all present"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install a Rust toolchain (rustup) first" >&2
    exit 1
fi
if command -v rustup >/dev/null 2>&1; then
    installed=$(rustup component list --installed 2>/dev/null || true)
    for component in rustfmt clippy; do
        if ! grep -q "^${component}" <<<"$installed"; then
            rustup component add "$component"
        fi
    done
fi
cargo fmt --version >/dev/null
cargo clippy --version >/dev/null

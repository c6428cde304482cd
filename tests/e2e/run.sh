#!/usr/bin/env bash
# End-to-end test of the Debian package in a booted Debian 12 container.
#
#   tests/e2e/run.sh [--keep]
#
# Builds the .deb (cargo deb), builds once and caches a bookworm root under
# /var/cache/pgsluice-e2e/ (debootstrap, ~5 min cold), boots a throwaway overlay
# of it with systemd-nspawn --boot, and drives it with nsenter: install, socket
# activation, pgbench, reload (good and broken), D-Bus policy, journal,
# watchdog restart, stop, purge. Prints each step; stops at the first that
# does not hold; always tears the container down (--keep: leaves it booted,
# prints how to enter it). Needs root. PGSLUICE_E2E_DEB=path skips the build.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD

CACHE=${PGSLUICE_E2E_CACHE:-/var/cache/pgsluice-e2e}
BASE=$CACHE/rootfs
KEEP=0
[[ ${1:-} == --keep ]] && KEEP=1
START=$(date +%s)

step() { printf '\n=== [%3ss] %s\n' "$(($(date +%s) - START))" "$*"; }
ok() { echo "ok: $*"; }
die() { echo "E2E FAIL: $*" >&2; exit 1; }

# ---------------------------------------------------------------- preflight
step "preflight"
[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, systemd-nspawn, nsenter)"
for c in debootstrap systemd-nspawn nsenter; do
    command -v "$c" >/dev/null || die "$c missing (scripts/install-deps.sh installs debootstrap and systemd-container)"
done
ok "root, debootstrap, systemd-nspawn, nsenter"

# ---------------------------------------------------------------- the package
step "build the package"
if [[ -n ${PGSLUICE_E2E_DEB:-} ]]; then
    DEB=$PGSLUICE_E2E_DEB
else
    command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
    # -a: tee must append to stderr; without it, tee truncates a log file that
    # stderr points to, wiping everything CI logged before this step.
    DEB=$(cargo deb --strip 2>&1 | tee -a /dev/stderr | tail -n 1)
fi
[[ -f $DEB ]] || die "no package built ($DEB)"
ok "$DEB"

# ---------------------------------------------------------------- the root
step "Debian 12 root (cached in $BASE)"
if [[ ! -e $CACHE/rootfs.complete ]]; then
    rm -rf "$BASE.tmp"
    mkdir -p "$CACHE"
    debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,dbus,postgresql,postgresql-client,procps,iproute2,ca-certificates \
        bookworm "$BASE.tmp" http://deb.debian.org/debian
    # No login prompt on the (absent) console; hostname; no network setup needed
    # (the container shares the host's network namespace).
    ln -sf /dev/null "$BASE.tmp/etc/systemd/system/console-getty.service"
    ln -sf /dev/null "$BASE.tmp/etc/systemd/system/getty@tty1.service"
    echo pgsluice-e2e >"$BASE.tmp/etc/hostname"
    rm -f "$CACHE/rootfs.complete"
    rm -rf "$BASE"
    mv "$BASE.tmp" "$BASE"
    touch "$CACHE/rootfs.complete"
    ok "built ($(du -sh "$BASE" | cut -f1))"
else
    ok "cached"
fi

# ---------------------------------------------------------------- boot
step "boot the container (systemd-nspawn --boot)"
RUN=$(mktemp -d /var/tmp/pgsluice-e2e.XXXXXX)
ROOT=$RUN/merged
mkdir -p "$RUN/upper" "$RUN/work" "$ROOT"
NSPAWN_PID=
LEADER=
OVERLAY=0
teardown() {
    local rc=$?
    if ((KEEP)) && [[ -n $LEADER ]]; then
        echo "kept: nsenter --target $LEADER --all; stop with: kill $NSPAWN_PID"
        return $rc
    fi
    step "tear down"
    if [[ -n $NSPAWN_PID ]] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        kill -TERM "$NSPAWN_PID" 2>/dev/null || true  # nspawn: clean poweroff of the container
        for _ in $(seq 1 30); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 1; done
        kill -KILL "$NSPAWN_PID" 2>/dev/null || true
        wait "$NSPAWN_PID" 2>/dev/null || true
    fi
    ((OVERLAY)) && umount "$ROOT" 2>/dev/null || umount -l "$ROOT" 2>/dev/null || true
    if ((rc != 0)) && [[ -s $RUN.console.log ]]; then
        echo "--- container console (last lines)"; tail -n 20 "$RUN.console.log" || true
    fi
    rm -rf "$RUN" "$RUN.console.log"
    echo "E2E $( ((rc == 0)) && echo PASSED || echo FAILED ) after $(($(date +%s) - START))s"
    return $rc
}
trap teardown EXIT

if mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$RUN/upper,workdir=$RUN/work" "$ROOT" 2>/dev/null; then
    OVERLAY=1
else
    echo "(overlayfs unavailable: copying the root)"
    cp -a "$BASE/." "$ROOT/"
fi
cp "$DEB" "$ROOT/root/"
DEB_IN=/root/$(basename "$DEB")

systemd-nspawn --boot --register=no --keep-unit --console=passive \
    --machine=pgsluice-e2e -D "$ROOT" >"$RUN.console.log" 2>&1 &
NSPAWN_PID=$!

# The container's init: the child of nspawn whose pid in its own namespace is 1.
for _ in $(seq 1 100); do
    for p in $(pgrep -P "$NSPAWN_PID" 2>/dev/null || true); do
        if awk '/^NSpid:/ { exit !($NF == 1 && NF > 2) }' "/proc/$p/status" 2>/dev/null; then
            LEADER=$p
        fi
    done
    [[ -n $LEADER ]] && break
    kill -0 "$NSPAWN_PID" 2>/dev/null || break
    sleep 0.2
done
if [[ -z $LEADER ]]; then
    cat "$RUN.console.log" >&2 || true
    die "systemd-nspawn --boot did not start a container init (output above)"
fi
ok "nspawn pid $NSPAWN_PID, container init pid $LEADER"

# Run a command in the container (all its namespaces, its root, a clean env).
c() {
    nsenter --target "$LEADER" --all -- \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 TERM=dumb HOME=/root "$@"
}
# The same through a shell.
csh() { c sh -ec "$1"; }

state=
for _ in $(seq 1 120); do
    state=$(c systemctl is-system-running 2>/dev/null || true)
    [[ $state == running || $state == degraded ]] && break
    sleep 1
done
[[ $state == running || $state == degraded ]] || {
    tail -50 "$RUN.console.log" >&2 || true
    die "the container did not finish booting (state: ${state:-none})"
}
[[ $state == degraded ]] && c systemctl --failed --no-legend || true
ok "booted: $state"

# ---------------------------------------------------------------- install
step "apt install ./$(basename "$DEB")"
c apt-get install -y -q --no-install-recommends "$DEB_IN" </dev/null
[[ $(c systemctl is-enabled pgsluice.socket) == enabled ]] || die "pgsluice.socket not enabled"
if c systemctl -q is-active pgsluice.socket pgsluice.service; then die "started at install"; fi
csh 'test "$(stat -c %U:%G:%a /etc/pgsluice/pgsluice.ini /etc/pgsluice/userlist.txt | sort -u)" = postgres:postgres:640' \
    || die "conffile ownership: $(c stat -c '%n %U:%G %a' /etc/pgsluice/pgsluice.ini /etc/pgsluice/userlist.txt)"
c getent group pgsluice-admin >/dev/null || die "no group pgsluice-admin"
ok "socket enabled, not started; conffiles postgres:postgres 640; group pgsluice-admin"

# ---------------------------------------------------------------- PostgreSQL user
step "a PostgreSQL user and its userlist line"
for _ in $(seq 1 60); do c pg_isready -q -h /run/postgresql && break; sleep 1; done
c pg_isready -h /run/postgresql || die "PostgreSQL not ready"
c runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -c "CREATE ROLE e2e LOGIN PASSWORD 'e2e-secret'" -c "CREATE DATABASE e2e OWNER e2e"
c runuser -u postgres -- psql -Atc "SELECT format('\"%s\" \"%s\"', rolname, rolpassword) FROM pg_authid WHERE rolname = 'e2e'" \
    | c tee -a /etc/pgsluice/userlist.txt >/dev/null
c grep -q '^"e2e" "SCRAM-SHA-256\$' /etc/pgsluice/userlist.txt || die "userlist line missing"
ok "role e2e with a SCRAM verifier in /etc/pgsluice/userlist.txt"

PSQL=(env PGPASSWORD=e2e-secret psql -X -v ON_ERROR_STOP=1 -At -U e2e)

# ---------------------------------------------------------------- activation
step "systemctl start pgsluice.socket; the first connection starts the service"
c systemctl start pgsluice.socket
c systemctl -q is-active pgsluice.socket || die "socket not active"
if c systemctl -q is-active pgsluice.service; then die "service active before any connection"; fi
out=$(c "${PSQL[@]}" -h localhost -p 6432 -d e2e -c 'SELECT 40 + 2') || die "psql through TCP failed"
[[ $out == 42 ]] || die "psql answered '$out'"
c systemctl -q is-active pgsluice.service || die "service not active after the connection"
out=$(c "${PSQL[@]}" -h /run/postgresql -p 6432 -d e2e -c 'SELECT 7') || die "psql through the Unix socket failed"
[[ $out == 7 ]] || die "psql (unix) answered '$out'"
c systemctl show -p StatusText --value pgsluice.service
ok "TCP and Unix socket answer; service activated"

# ---------------------------------------------------------------- pgbench
step "pgbench through pgsluice"
c env PGPASSWORD=e2e-secret pgbench -q -i -s 2 -h localhost -p 6432 -U e2e e2e
out=$(c env PGPASSWORD=e2e-secret pgbench -c 10 -j 2 -T 8 -S -h localhost -p 6432 -U e2e e2e) || die "pgbench failed: $out"
grep -E 'number of (transactions actually processed|failed)|tps' <<<"$out"
grep -q 'number of failed transactions: 0' <<<"$out" || die "pgbench had failed transactions"
ok "pgbench"

# ---------------------------------------------------------------- reload
step "systemctl reload after an edit succeeds"
c sed -i 's/^default_pool_size = .*/default_pool_size = 25/' /etc/pgsluice/pgsluice.ini
c systemctl reload pgsluice || die "reload of a good config failed"
c systemctl show -p StatusText --value pgsluice.service
ok "reload succeeded"

step "systemctl reload after a broken edit fails, the old config serves on"
c cp /etc/pgsluice/pgsluice.ini /root/pgsluice.ini.good
c sed -i 's/^default_pool_size = .*/default_pool_size = twenty/' /etc/pgsluice/pgsluice.ini
if out=$(c systemctl reload pgsluice 2>&1); then die "reload of a broken config succeeded"; fi
echo "$out"
status=$(c systemctl show -p StatusText --value pgsluice.service)
echo "StatusText: $status"
[[ $status == *"reload failed"* ]] || die "StatusText does not say the reload failed"
c systemctl -q is-active pgsluice.service || die "service not active after the failed reload"
[[ $(c "${PSQL[@]}" -h localhost -p 6432 -d e2e -c 'SELECT 1') == 1 ]] || die "no longer serving"
ok "reload failed visibly (exit non-zero), still serving"

step "journalctl -u pgsluice -p warning shows the error"
out=$(c journalctl -q --no-pager -u pgsluice -p warning)
echo "$out" | tail -n 5
grep -q "default_pool_size" <<<"$out" || die "the broken key is not in the warning-level journal"
c cp /root/pgsluice.ini.good /etc/pgsluice/pgsluice.ini
c systemctl reload pgsluice || die "reload after the fix failed"
ok "error in the journal; fixed and reloaded"

# ---------------------------------------------------------------- PAM
step "auth_type = pam: /etc/pam.d/pgbouncer decides, the pool logs in with the password"
# pam_exec hands the password to the script on standard input, ended by a NUL.
csh 'printf "%s\n" "#!/bin/bash" "IFS= read -r -d \"\" pw || true" \
    "[[ \$PAM_USER == e2e && \$pw == e2e-secret ]]" > /usr/local/bin/e2e-pam-check'
c chmod 755 /usr/local/bin/e2e-pam-check
csh 'printf "%s\n" "auth required pam_exec.so expose_authtok quiet /usr/local/bin/e2e-pam-check" \
    "account required pam_permit.so" > /etc/pam.d/pgbouncer'
c sed -i 's/^auth_type = .*/auth_type = pam/' /etc/pgsluice/pgsluice.ini
c systemctl reload pgsluice || die "reload to auth_type = pam failed"
[[ $(c "${PSQL[@]}" -h localhost -p 6432 -d e2e -c 'SELECT current_user') == e2e ]] \
    || die "no login through PAM"
if out=$(c env PGPASSWORD=wrong psql -X -At -U e2e -h localhost -p 6432 -d e2e -c 'SELECT 1' 2>&1); then
    die "a password PAM refuses logged in: $out"
fi
echo "wrong password: $out"
grep -q 'PAM authentication failed' <<<"$out" || die "the refusal does not say why: $out"
c cp /root/pgsluice.ini.good /etc/pgsluice/pgsluice.ini
c systemctl reload pgsluice || die "reload back to scram-sha-256 failed"
c rm /etc/pam.d/pgbouncer /usr/local/bin/e2e-pam-check
ok "PAM let e2e in with its password and refused a wrong one"

# ---------------------------------------------------------------- D-Bus
step "D-Bus: GetPools as root, refused for an unprivileged user"
DBUS=(busctl call org.pgsluice.Pooler1 /org/pgsluice/Pooler1 org.pgsluice.Pooler1)
out=$(c "${DBUS[@]}" GetPools) || die "GetPools as root failed: $out"
echo "${out:0:200}..."
[[ $out == aa\{sv\}* ]] || die "GetPools answered '$out'"
if out=$(c runuser -u nobody -- "${DBUS[@]}" GetPools 2>&1); then die "GetPools allowed for nobody: $out"; fi
echo "nobody: $out"
grep -qi 'access denied' <<<"$out" || die "nobody's refusal is not AccessDenied"
out=$(c runuser -u nobody -- busctl get-property org.pgsluice.Pooler1 /org/pgsluice/Pooler1 org.pgsluice.Pooler1 State) \
    || die "nobody cannot read State"
echo "nobody reads State: $out"
ok "policy holds"

# ---------------------------------------------------------------- watchdog
step "watchdog: a stopped process is restarted (WatchdogSec=3s drop-in)"
c mkdir -p /etc/systemd/system/pgsluice.service.d
csh 'printf "[Service]\nWatchdogSec=3s\n" > /etc/systemd/system/pgsluice.service.d/e2e-watchdog.conf'
c systemctl daemon-reload
c systemctl restart pgsluice.service
n0=$(c systemctl show -p NRestarts --value pgsluice.service)
pid0=$(c systemctl show -p MainPID --value pgsluice.service)
[[ $pid0 -gt 0 ]] || die "no MainPID"
c kill -STOP "$pid0"
echo "SIGSTOP to $pid0 (NRestarts=$n0)"
n1=$n0
pid1=$pid0
for _ in $(seq 1 40); do
    sleep 1
    n1=$(c systemctl show -p NRestarts --value pgsluice.service)
    pid1=$(c systemctl show -p MainPID --value pgsluice.service)
    ((n1 > n0)) && [[ $pid1 != 0 && $pid1 != "$pid0" ]] && c systemctl -q is-active pgsluice.service && break
done
((n1 > n0)) || die "no restart after the watchdog timeout (NRestarts=$n1)"
[[ $pid1 != "$pid0" ]] || die "same MainPID after the restart"
c journalctl -q --no-pager -u pgsluice -n 30 | grep -i -E 'watchdog' || true
[[ $(c "${PSQL[@]}" -h localhost -p 6432 -d e2e -c 'SELECT 1') == 1 ]] || die "not serving after the restart"
c rm -r /etc/systemd/system/pgsluice.service.d
c systemctl daemon-reload
ok "restarted by the watchdog: NRestarts $n0 -> $n1, MainPID $pid0 -> $pid1"

# ---------------------------------------------------------------- stop
step "systemctl stop exits cleanly"
c systemctl stop pgsluice.socket pgsluice.service
res=$(c systemctl show -p Result --value pgsluice.service)
code=$(c systemctl show -p ExecMainStatus --value pgsluice.service)
echo "Result=$res ExecMainStatus=$code"
[[ $res == success ]] || die "stop result: $res"
c journalctl -q --no-pager -u pgsluice -n 5
ok "stopped cleanly"

# ---------------------------------------------------------------- purge
step "apt purge leaves no pgsluice files"
c apt-get purge -y -q pgsluice </dev/null
left=$(c find / -xdev \( -path /proc -o -path /sys -o -path /root \) -prune -o \
    \( -iname '*pgsluice*' -print \) 2>/dev/null || true)
if [[ -n $left ]]; then echo "$left"; die "files left after purge"; fi
if c getent group pgsluice-admin >/dev/null; then die "group pgsluice-admin left"; fi
if c dpkg-query -W pgsluice 2>/dev/null; then die "package still known to dpkg"; fi
ok "nothing left"

step "all steps passed"

#!/usr/bin/env bash
# Static checks of the packaging: `tests/packaging.sh units|man|deb`.
#   units  systemd-analyze verify of systemd/pgsluice.{socket,service}: exit 0 AND no output
#   man    man --warnings / groff -ww on man/*.[58], and man/pgsluice.ini.5 up to date
#   deb    lintian on target/debian/*.deb: no E: tags (W:/I: are printed)
# Each prints what it ran and fails on the first problem.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "FAIL: $*" >&2; exit 1; }

units() {
    local bin tmp out
    # systemd-analyze checks that ExecStart= exists: verify a copy pointing at
    # the built binary (any profile), with the man pages on MANPATH so that the
    # Documentation=man: links are checked too.
    bin=${PGSLUICE_BIN:-}
    if [[ -z $bin ]]; then
        for b in target/release/pgsluice target/debug/pgsluice; do
            [[ -x $b ]] && bin=$PWD/$b && break
        done
    fi
    [[ -n $bin ]] || { cargo build --bin pgsluice -q; bin=$PWD/target/debug/pgsluice; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    mkdir -p "$tmp/man/man8" "$tmp/man/man5"
    cp man/pgsluice.8 "$tmp/man/man8/"
    cp man/pgsluice.ini.5 "$tmp/man/man5/"
    for u in pgsluice.socket pgsluice.service; do
        sed "s#^ExecStart=/usr/sbin/pgsluice #ExecStart=$bin #" "systemd/$u" >"$tmp/$u"
    done
    grep -q "^ExecStart=$bin " "$tmp/pgsluice.service" || fail "ExecStart= not rewritten"
    echo "+ systemd-analyze verify pgsluice.socket pgsluice.service (ExecStart=$bin)"
    out=$(cd "$tmp" && MANPATH="$tmp/man:" systemd-analyze verify ./pgsluice.socket ./pgsluice.service 2>&1) \
        || fail "systemd-analyze verify exited non-zero: $out"
    [[ -z $out ]] || fail "systemd-analyze verify printed: $out"
    echo "units: systemd-analyze verify clean"
}

man_pages() {
    local f out
    command -v man >/dev/null || fail "man not installed (apt-get install man-db)"
    command -v groff >/dev/null || fail "groff not installed (apt-get install groff-base)"
    for f in man/pgsluice.8 man/pgsluice.ini.5; do
        echo "+ man --warnings -l $f; groff -ww -man -z $f"
        out=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$f" 2>&1 >/dev/null)
        [[ -z $out ]] || fail "man --warnings $f: $out"
        out=$(groff -ww -man -z "$f" 2>&1)
        [[ -z $out ]] || fail "groff -ww $f: $out"
    done
    echo "+ python3 man/gen-ini-page.py | diff - man/pgsluice.ini.5"
    python3 man/gen-ini-page.py | diff -u man/pgsluice.ini.5 - \
        || fail "man/pgsluice.ini.5 is stale: python3 man/gen-ini-page.py > man/pgsluice.ini.5"
    echo "man: no warnings, pgsluice.ini.5 up to date"
}

deb() {
    local debs out
    shopt -s nullglob
    debs=(target/debian/pgsluice_*.deb)
    ((${#debs[@]})) || fail "no target/debian/pgsluice_*.deb (make deb)"
    command -v lintian >/dev/null || fail "lintian not installed"
    echo "+ lintian ${debs[*]}"
    out=$(lintian --tag-display-limit 0 "${debs[@]}" 2>&1) || true
    [[ -n $out ]] && echo "$out"
    if grep -q '^E:' <<<"$out"; then fail "lintian reports errors"; fi
    echo "deb: lintian reports no errors"
}

case ${1:-} in
units) units ;;
man) man_pages ;;
deb) deb ;;
*) echo "usage: $0 units|man|deb" >&2; exit 2 ;;
esac

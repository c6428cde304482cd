"""What the benchmark needs on the machine, installed when missing (Debian 12):
PostgreSQL 15 server programs and pgbench, PgBouncer, prlimit, matplotlib for the
chart; and the release build of pgsluice."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from . import proc

PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")
SYSTEM_PYTHON = "/usr/bin/python3"

_apt_updated = False


def apt_install(*packages):
    """apt-get install, updating the package lists first if that fails once."""
    global _apt_updated
    if os.geteuid() != 0:
        raise RuntimeError(f"need root to install {' '.join(packages)} (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    print(f"installing: {' '.join(packages)}", flush=True)
    if subprocess.run(cmd, env=env, timeout=900).returncode == 0:
        return
    if not _apt_updated:
        subprocess.run(["apt-get", "update", "-q"], env=env, timeout=600, check=True)
        _apt_updated = True
    subprocess.run(cmd, env=env, timeout=900, check=True)


def ensure():
    missing = []
    if not all(os.access(os.path.join(PGBIN, p), os.X_OK)
               for p in ("initdb", "pg_ctl", "postgres", "pgbench")):
        missing += ["postgresql-15"]
    if not shutil.which("psql"):
        missing += ["postgresql-client-15"]
    if not os.access("/usr/sbin/pgbouncer", os.X_OK):
        missing += ["pgbouncer"]
    if not shutil.which("prlimit"):
        missing += ["util-linux"]
    if not shutil.which("openssl"):
        missing += ["openssl"]  # the certificate of the TLS workload
    if missing:
        apt_install(*missing)
    if os.geteuid() == 0:
        proc.run(["id", "postgres"], timeout=10)  # the OS user the servers run as
    if chart_python() is None:
        apt_install("python3-matplotlib")


def chart_python():
    """An interpreter that can import matplotlib: this one, else Debian's."""
    for exe in (sys.executable, SYSTEM_PYTHON):
        if exe and os.access(exe, os.X_OK) and subprocess.run(
                [exe, "-c", "import matplotlib"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, timeout=60).returncode == 0:
            return exe
    return None


def draw_chart(data, out_path, script):
    exe = chart_python()
    if exe is None:
        return False
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(data, f)
    try:
        r = subprocess.run([exe, script, f.name, out_path], timeout=120)
        return r.returncode == 0
    finally:
        os.unlink(f.name)


def build_release(repo):
    cargo = os.environ.get("CARGO", "cargo")
    print("cargo build --release", flush=True)
    subprocess.run([cargo, "build", "--release"], cwd=repo, timeout=1800, check=True)


def git_rev(repo):
    """Short commit, and whether the sources differ from it (read-only git calls)."""
    git = ["git", "--no-optional-locks", "-C", repo]
    try:
        rev = proc.run(git + ["rev-parse", "--short", "HEAD"], timeout=10).stdout.strip()
        changed = proc.run(git + ["status", "--porcelain", "--", "src", "Cargo.toml",
                                  "Cargo.lock"], timeout=30).stdout.strip()
    except Exception:  # noqa: BLE001 - not a git checkout
        return "unknown"
    return rev + (" + uncommitted changes in src/" if changed else "")

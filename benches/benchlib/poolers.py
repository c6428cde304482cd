"""The two poolers under test, started the same way from the same settings: PgBouncer
(the Debian package's /usr/sbin/pgbouncer) and pgsluice, each with its own ini in the
run's temporary directory, as the `postgres` OS user, with the same file descriptor
limit, logging to a file."""

import os
import re
import signal
import socket
import subprocess
import time

from . import proc

PGBOUNCER_BIN = "/usr/sbin/pgbouncer"  # Debian's package, the reference

# Everything both poolers get. Only listen_port and the log/pid paths differ.
COMMON_SETTINGS = {
    "listen_addr": "127.0.0.1",
    "pool_mode": "transaction",
    "default_pool_size": "20",
    "max_client_conn": "12000",
    # Logging out of the measurement, the same for both.
    "log_connections": "0",
    "log_disconnections": "0",
    "log_stats": "0",
}


class Pooler:
    def __init__(self, name, binary, work, port, pg_port, database, nofile):
        self.name = name
        self.binary = binary
        self.work = work
        self.port = port
        self.pg_port = pg_port
        self.database = database
        self.nofile = nofile
        self.slug = name.lower()
        self.ini = os.path.join(work, f"{self.slug}.ini")
        self.logfile = os.path.join(work, f"{self.slug}.log")
        self.popen = None
        self.auth_type = None

    @property
    def pid(self):
        return self.popen.pid

    def write_ini(self, auth_type, auth_file, tls=None):
        settings = dict(COMMON_SETTINGS)
        settings.update({
            "listen_port": str(self.port),
            "unix_socket_dir": self.work,
            "auth_type": auth_type,
            "auth_file": auth_file,
        })
        if tls:
            cert, key = tls
            settings.update({
                "client_tls_sslmode": "require",
                "client_tls_cert_file": cert,
                "client_tls_key_file": key,
            })
        lines = ["[databases]",
                 f"{self.database} = host=127.0.0.1 port={self.pg_port} dbname={self.database}",
                 "", "[pgbouncer]"]
        lines += [f"{k} = {v}" for k, v in settings.items()]
        with open(self.ini, "w") as f:
            f.write("\n".join(lines) + "\n")
        if os.geteuid() == 0:
            os.chown(self.ini, *_postgres_ids())

    def start(self, auth_type, auth_file, tls=None):
        """Start with this auth_type (and TLS required of clients, with the
        certificate and key files `tls`, when given); wait until it accepts TCP
        connections."""
        self.write_ini(auth_type, auth_file, tls)
        self.auth_type = auth_type
        log = open(self.logfile, "a")
        log.write(f"=== start with auth_type={auth_type} at {time.strftime('%H:%M:%S')}\n")
        log.flush()
        # prlimit sets the same RLIMIT_NOFILE for both and then execs the pooler, so
        # the pid we hold is the pooler's.
        cmd = ["prlimit", f"--nofile={self.nofile}:{self.nofile}", "--", self.binary, self.ini]
        self.popen = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=self.work, **proc.as_postgres_kwargs(),
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; log {self.logfile}:\n"
                                   + self.log_tail())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen on {self.port} within 20 s:\n"
                           + self.log_tail())

    def stop(self):
        if self.popen is None or self.popen.poll() is not None:
            self.popen = None
            return
        # SIGTERM stops both at once; SIGKILL if that has not worked within 5 s.
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.kill(self.popen.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.popen = None

    def restart(self, auth_type, auth_file, tls=None):
        self.stop()
        self.start(auth_type, auth_file, tls)

    def log_tail(self, lines=20):
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def log_problems(self):
        """Lines of the pooler's log at WARNING level or worse."""
        try:
            with open(self.logfile, errors="replace") as f:
                return [l.rstrip() for l in f
                        if any(w in l for w in ("WARNING", "ERROR", "FATAL", "PANIC",
                                                " WARN ", "error"))]
        except OSError:
            return []


def group_log_lines(lines):
    """Group log lines that differ only in time, pid, server/client id and address:
    [(count, first line)], most frequent first."""
    groups = {}
    for line in lines:
        key = re.sub(r"^\S+ \S+ \S+ \[\d+\] ", "", line)
        key = re.sub(r"\b[SC]-\d+\b|pid=\d+|\d+\.\d+\.\d+\.\d+:\d+|\b\d+\b", "#", key)
        count, first = groups.get(key, (0, line))
        groups[key] = (count + 1, first)
    return sorted(groups.values(), key=lambda g: -g[0])


def _postgres_ids():
    import pwd
    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid

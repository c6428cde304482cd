"""One pgbench run against one target, with per-transaction logs (-l) from which the
latency percentiles are computed, and the TPS and transaction count pgbench prints."""

import glob
import os
import re
import shutil
import subprocess
import tempfile

from . import proc


class Target:
    """Where pgbench connects: direct PostgreSQL or a pooler (then `pooler` is set)."""

    def __init__(self, name, port, pooler=None):
        self.name = name
        self.port = port
        self.pooler = pooler


class Result:
    def __init__(self):
        self.tps = None
        self.transactions = None
        self.failed = 0
        self.p50_ms = None
        self.p99_ms = None
        self.cpu_us_per_tx = None  # pooler CPU (utime+stime) per transaction
        self.kernel_us_per_tx = None  # the stime part of it
        self.error = None
        self.foreign_cores = None  # CPU other processes on the machine used meanwhile


def percentile(sorted_values, q):
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n*q/100), at least 1
    return sorted_values[int(rank) - 1]


def read_latencies_us(log_dir):
    """Latencies (µs) from pgbench's per-transaction logs: one file per thread, lines
    `client_id transaction_no time script_no time_epoch time_us`, `time` being the
    latency in µs (`skipped`/`failed` lines, which have no latency, are left out)."""
    values = []
    for path in glob.glob(os.path.join(log_dir, "tx*")):
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    values.append(int(fields[2]))
    values.sort()
    return values


def run(pgbench, target, user, password, database, clients, seconds, script_args,
        connect_each=False, latencies=True, work=None, transactions=None, sslmode="disable"):
    """Run pgbench for `seconds` (-T), or for `transactions` per client (-t) when given;
    return a Result. script_args: e.g. ["-S", "-M", "simple"] or []. sslmode is
    libpq's: "require" for the TLS workloads."""
    result = Result()
    log_dir = tempfile.mkdtemp(prefix="pgbench-log-", dir=work)
    cmd = [pgbench, "-n", "-h", "127.0.0.1", "-p", str(target.port), "-U", user,
           "-c", str(clients), "-j", str(min(2, clients))]
    cmd += ["-t", str(transactions)] if transactions else ["-T", str(seconds)]
    cmd += script_args
    if connect_each:
        cmd.append("-C")
    if latencies:
        cmd += ["-l", f"--log-prefix={os.path.join(log_dir, 'tx')}"]
    cmd.append(database)
    # No GSS encryption attempt, and TLS only when asked for, for every target alike.
    env = dict(os.environ, PGPASSWORD=password, PGSSLMODE=sslmode, PGGSSENCMODE="disable")
    cpu_before = proc.cpu_seconds(target.pooler.pid) if target.pooler else None
    try:
        out = proc.run(cmd, timeout=seconds + 120, env=env, check=False)
    except subprocess.TimeoutExpired:
        result.error = "pgbench timed out"
        shutil.rmtree(log_dir, ignore_errors=True)
        return result
    cpu_after = proc.cpu_seconds(target.pooler.pid) if target.pooler else None
    text = out.stdout + out.stderr
    m = re.search(r"number of transactions actually processed: (\d+)", text)
    if m:
        result.transactions = int(m.group(1))
    m = re.search(r"number of failed transactions: (\d+)", text)
    if m:
        result.failed = int(m.group(1))
    m = re.search(r"^tps = ([0-9.]+)", text, re.M)
    if m:
        result.tps = float(m.group(1))
    if out.returncode != 0 or result.tps is None:
        lines = [l.strip() for l in text.splitlines()
                 if "error" in l.lower() or "fatal" in l.lower()]
        if lines:
            why = " | ".join(lines[:3])
        elif not result.transactions:
            why = ("no transaction completed within -T (the clients' logins took the whole "
                   "run)")
        else:
            why = text.strip().splitlines()[-1] if text.strip() else "no output"
        result.error = f"pgbench exit {out.returncode}: {why}"
    if latencies:
        values = read_latencies_us(log_dir)
        result.p50_ms = _ms(percentile(values, 50))
        result.p99_ms = _ms(percentile(values, 99))
    if target.pooler and result.transactions:
        user, kernel = (after - before for after, before in zip(cpu_after, cpu_before))
        result.cpu_us_per_tx = (user + kernel) * 1e6 / result.transactions
        result.kernel_us_per_tx = kernel * 1e6 / result.transactions
    shutil.rmtree(log_dir, ignore_errors=True)
    return result


def _ms(us):
    return None if us is None else us / 1000.0

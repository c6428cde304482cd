#!/usr/bin/env python3
"""pgsluice against PgBouncer (and direct PostgreSQL) in the same run.

    python3 benches/bench.py            full run, about 10 minutes   (make bench)
    python3 benches/bench.py --quick    about 1.5 minutes            (make bench-quick)

One throwaway PostgreSQL 15 (temporary directory, free port, fsync=off), `pgbench -i
-s 10` once; pgsluice built with `cargo build --release`; PgBouncer (Debian's
/usr/sbin/pgbouncer, installed when missing) and pgsluice started with the same
settings (transaction mode, default_pool_size 20, same auth, same logging, same fd
limit). Workloads run interleaved (direct, PgBouncer, pgsluice, direct, …) and
repeated; the report gives medians and the pgsluice/PgBouncer ratio:
benches/results/<date>-<host>.md and a PNG chart beside it (--quick writes under
benches/results/quick/, which git ignores). Everything started is stopped at the end,
also on error, Ctrl-C, SIGTERM or the overall time limit.
"""

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time

BENCHES = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCHES)
sys.path.insert(0, BENCHES)

from benchlib import cluster as pgcluster  # noqa: E402
from benchlib import deps, idle, pgbench, poolers, proc, report, summary  # noqa: E402
from benchlib.report import DIRECT, PGBOUNCER, PGSLUICE  # noqa: E402



class Plan:
    def __init__(self, quick):
        self.quick = quick
        self.scale = 10
        self.max_connections = 300  # direct runs go up to 200 clients; 1000 is N/A
        self.direct_max_clients = 200
        self.nofile = 65536  # RLIMIT_NOFILE wanted for both poolers and this script
        self.tpcb_clients = 50
        self.storm_clients = 20
        if quick:
            self.reps, self.seconds, self.storm_seconds = 1, 3, 2
            self.simple_clients = [50, 200]
            self.extended_clients = [50]
            self.idle_counts = [1000, 10000]
            self.time_limit = 420
            self.quiet_budget = 5
        else:
            self.reps, self.seconds, self.storm_seconds = 3, 4, 4
            self.simple_clients = [1, 10, 50, 200, 1000]
            self.extended_clients = [1, 10, 50, 200, 1000]
            self.idle_counts = [1000, 5000, 10000]
            self.time_limit = 1800
            self.quiet_budget = 30

    def tls_workloads(self):
        """The select-only runs at 50 clients again, over TLS (poolers only)."""
        modes = ["simple"] if self.quick else ["simple", "extended"]
        return [(f"TLS-S-{m}-50", 50, ["-S", "-M", m]) for m in modes]

    def throughput_workloads(self):
        """(key, clients, pgbench arguments) in run order."""
        out = [(f"S-simple-{c}", c, ["-S", "-M", "simple"]) for c in self.simple_clients]
        out += [(f"S-extended-{c}", c, ["-S", "-M", "extended"]) for c in self.extended_clients]
        out.append((f"tpcb-{self.tpcb_clients}", self.tpcb_clients, []))
        return out


class Bench:
    def __init__(self, plan, out_dir):
        self.plan = plan
        self.out_dir = out_dir
        self.started = time.monotonic()
        self.work = None
        self.pg = None
        self.poolers = []
        self.runs = {}  # workload key -> target name -> [pgbench.Result]
        self.idle = {}  # pooler name -> [outcome dict]
        self.problems = []  # errors and oddities for the report
        self.foreign = []  # (cores used by other processes, run) per measured run
        self.quiet_budget = plan.quiet_budget  # seconds left to wait for a quiet machine
        self.quiet_waited = 0.0

    # -- helpers

    def say(self, text):
        print(f"[{time.monotonic() - self.started:5.0f}s] {text}", flush=True)

    def record(self, key, target, result):
        self.runs.setdefault(key, {}).setdefault(target.name, []).append(result)
        self.foreign.append((result.foreign_cores, f"{key} via {target.name}"))
        if result.error:
            self.problems.append(f"{key} via {target.name}: {result.error}")
        if result.failed:
            self.problems.append(f"{key} via {target.name}: {result.failed} failed transactions")

    # -- setup

    def setup(self):
        plan = self.plan
        self.work = tempfile.mkdtemp(prefix="pgsluice-bench-", dir="/tmp")
        os.chmod(self.work, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.work, "postgres", "postgres")
        binary = os.path.join(self.work, "pgsluice")
        # A copy: a rebuild in the work tree during the run cannot change what runs.
        shutil.copy2(os.path.join(REPO, "target", "release", "pgsluice"), binary)
        self.sluice_version = proc.run([binary, "--version"], timeout=10).stdout.strip()

        taken = set()
        pg_port = proc.free_port(taken)
        taken.add(pg_port)
        self.pg = pgcluster.Cluster(deps.PGBIN, self.work, plan.max_connections)
        self.say(f"PostgreSQL 15 on 127.0.0.1:{pg_port}, data in {self.work}/data")
        self.pg.start(pg_port)
        self.say(f"pgbench -i -s {plan.scale}")
        self.pg.create_roles_and_data(plan.scale)

        self.userlist = os.path.join(self.work, "userlist.txt")
        with open(self.userlist, "w") as f:
            f.write(self.pg.secrets())
        os.chmod(self.userlist, 0o600)
        if os.geteuid() == 0:
            shutil.chown(self.userlist, "postgres", "postgres")

        for name, path in ((PGBOUNCER, poolers.PGBOUNCER_BIN), (PGSLUICE, binary)):
            port = proc.free_port(taken)
            taken.add(port)
            self.poolers.append(poolers.Pooler(name, path, self.work, port, pg_port,
                                               pgcluster.DATABASE, plan.nofile))
        self.pgb, self.sluice = self.poolers
        self.direct = pgbench.Target(DIRECT, pg_port)
        self.targets = [self.direct] + [pgbench.Target(p.name, p.port, p) for p in self.poolers]

    def start_poolers(self, auth_type, tls=None):
        for p in self.poolers:
            p.restart(auth_type, self.userlist, tls)
            self.say(f"{p.name} on 127.0.0.1:{p.port} (pid {p.pid}, auth_type={auth_type}, "
                     f"{'TLS required, ' if tls else ''}"
                     f"open files limit {proc.nofile_limit(p.pid)})")

    def certificate(self):
        """A self-signed P-256 certificate and key for 127.0.0.1, the same for both
        poolers; (cert, key) paths."""
        cert, key = os.path.join(self.work, "tls.crt"), os.path.join(self.work, "tls.key")
        proc.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                  "-subj", "/CN=localhost", "-days", "2"], timeout=60)
        os.chmod(key, 0o600)
        if os.geteuid() == 0:
            for path in (cert, key):
                shutil.chown(path, "postgres", "postgres")
        return cert, key

    def pgbench(self, target, user, password, clients, seconds, args, **kw):
        roots = [os.getpid(), self.pg.postmaster_pid()]
        if self.quiet_budget > 0:
            # On a shared machine: give other work a moment to finish, within a budget.
            waited = proc.wait_for_quiet(roots, min(self.quiet_budget, 10))
            self.quiet_budget -= waited
            self.quiet_waited += waited
        load = proc.ForeignLoad(roots)
        result = pgbench.run(os.path.join(deps.PGBIN, "pgbench"), target, user, password,
                             pgcluster.DATABASE, clients, seconds, args, work=self.work, **kw)
        result.foreign_cores = load.cores()
        return result

    # -- workloads

    def warm_up(self, user, password, targets=None, sslmode="disable"):
        for t in targets or self.targets:
            r = self.pgbench(t, user, password, 10, 60, ["-S"], latencies=False,
                             transactions=100, sslmode=sslmode)
            if r.error:
                raise RuntimeError(f"warm-up through {t.name} failed: {r.error}")

    def throughput(self):
        plan = self.plan
        user, pw = pgcluster.MD5_USER, pgcluster.MD5_PASSWORD
        for rep in range(plan.reps):
            for key, clients, args in plan.throughput_workloads():
                for t in self.targets:
                    if t is self.direct and clients > plan.direct_max_clients:
                        continue  # over max_connections: N/A
                    r = self.pgbench(t, user, pw, clients, plan.seconds, args)
                    self.record(key, t, r)
                    cpu = f", pooler {r.cpu_us_per_tx:.1f} µs/tx" if r.cpu_us_per_tx else ""
                    self.say(f"rep {rep + 1}/{plan.reps} {key:<18} {t.name:<17} "
                             f"{report.fmt(r.tps):>8} tps  p50 {report.fmt(r.p50_ms, 2)} ms  "
                             f"p99 {report.fmt(r.p99_ms, 2)} ms{cpu}{_other(r)}"
                             + (f"  ERROR {r.error}" if r.error else ""))

    def tls_throughput(self):
        plan = self.plan
        user, pw = pgcluster.MD5_USER, pgcluster.MD5_PASSWORD
        pooled = self.targets[1:]  # the test PostgreSQL has no TLS of its own
        self.warm_up(user, pw, pooled, sslmode="require")
        for rep in range(plan.reps):
            for key, clients, args in plan.tls_workloads():
                for t in pooled:
                    r = self.pgbench(t, user, pw, clients, plan.seconds, args, sslmode="require")
                    self.record(key, t, r)
                    self.say(f"rep {rep + 1}/{plan.reps} {key:<18} {t.name:<17} "
                             f"{report.fmt(r.tps):>8} tps  p99 {report.fmt(r.p99_ms, 2)} ms  "
                             f"pooler {report.fmt(r.cpu_us_per_tx, 1)} µs/tx{_other(r)}"
                             + (f"  ERROR {r.error}" if r.error else ""))

    def storm(self, key, user, password):
        plan = self.plan
        for rep in range(plan.reps):
            for t in self.targets:
                r = self.pgbench(t, user, password, plan.storm_clients, plan.storm_seconds, ["-S"],
                                 connect_each=True, latencies=False)
                self.record(key, t, r)
                self.say(f"rep {rep + 1}/{plan.reps} {key:<18} {t.name:<17} "
                         f"{report.fmt(r.tps):>8} connections/s{_other(r)}"
                         + (f"  ERROR {r.error}" if r.error else ""))

    def idle_clients(self):
        plan = self.plan
        user, pw = pgcluster.MD5_USER, pgcluster.MD5_PASSWORD
        for rep in range(plan.reps):
            for p in self.poolers:
                # A fresh process each time, so earlier workloads' memory does not
                # count, warmed by one query so the first server connection exists.
                p.restart("md5", self.userlist)
                asyncio.run(self._one_query(p.port, user, pw))
                time.sleep(0.5)
                base = proc.rss_kib(p.pid)

                def checkpoint(held, pid=p.pid, base=base):
                    return proc.rss_kib(pid) - base

                outcome = asyncio.run(idle.hold(p.port, user, pw, pgcluster.DATABASE,
                                                plan.idle_counts, checkpoint))
                outcome["base_kib"] = base
                outcome["alive"] = p.popen.poll() is None
                self.idle.setdefault(p.name, []).append(outcome)
                for count, held, grow in outcome["checkpoints"]:
                    self.say(f"rep {rep + 1}/{plan.reps} idle {count:>6} {p.name:<10} held "
                             f"{held}, RSS +{grow} KiB = {grow / max(held, 1):.2f} KiB/client")
                self.say(f"    {p.name}: {len(outcome['errors'])} errors, {outcome['lost']} "
                         f"lost; {outcome['proof']}")
                for e in outcome["errors"][:3]:
                    self.problems.append(f"idle clients via {p.name}: {e}")
                if len(outcome["errors"]) > 3:
                    self.problems.append(f"idle clients via {p.name}: "
                                         f"{len(outcome['errors']) - 3} more errors")

    @staticmethod
    async def _one_query(port, user, pw):
        c = await idle.connect(port, user, pw, pgcluster.DATABASE, 10)
        await c.query("SELECT 1", 10)
        c.close()

    def run(self):
        self.setup()
        self.start_poolers("md5")
        self.warm_up(pgcluster.MD5_USER, pgcluster.MD5_PASSWORD)
        self.say("throughput (md5 auth)")
        self.throughput()
        self.say("connection storm, md5")
        self.storm("storm-md5", pgcluster.MD5_USER, pgcluster.MD5_PASSWORD)
        self.say("idle clients (md5 auth)")
        self.idle_clients()
        self.say("throughput over TLS (client_tls_sslmode = require, md5 auth)")
        self.start_poolers("md5", tls=self.certificate())
        self.tls_throughput()
        self.say("connection storm, SCRAM-SHA-256")
        self.start_poolers("scram-sha-256")
        self.warm_up(pgcluster.SCRAM_USER, pgcluster.SCRAM_PASSWORD)
        self.storm("storm-scram", pgcluster.SCRAM_USER, pgcluster.SCRAM_PASSWORD)

    def cleanup(self, keep_work):
        for p in self.poolers:
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001 - keep cleaning up
                print(f"stopping {p.name}: {e}", file=sys.stderr)
        for p in self.poolers:
            lines = p.log_problems()
            if lines:
                kinds = poolers.group_log_lines(lines)
                self.problems.append(f"{p.name} logged {len(lines)} line(s) at WARNING or "
                                     f"worse, {len(kinds)} kind(s) (count, first instance):")
                self.problems += [f"    {n}× `` {first} ``" for n, first in kinds[:8]]
        if self.pg is not None:
            try:
                self.pg.stop()
            except Exception as e:  # noqa: BLE001
                print(f"stopping PostgreSQL: {e}", file=sys.stderr)
        if self.work and not keep_work:
            shutil.rmtree(self.work, ignore_errors=True)
        elif self.work:
            print(f"work directory kept: {self.work}")


def _other(result):
    c = result.foreign_cores
    return "" if c is None else f"  (other load {c:.2f} cores)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="about 1.5 minutes: fewer client "
                    "counts, one repetition, short runs")
    ap.add_argument("--out", help="directory for the report (default benches/results, "
                    "benches/results/quick with --quick)")
    ap.add_argument("--keep-work", action="store_true",
                    help="keep the temporary directory (logs, configs) for a look")
    ap.add_argument("--no-build", action="store_true",
                    help="use target/release/pgsluice as it is")
    args = ap.parse_args()
    plan = Plan(args.quick)
    out_dir = args.out or os.path.join(BENCHES, "results", "quick" if args.quick else "")

    deps.ensure()
    # 65536 where the hard limit allows; otherwise the hard limit (a container without
    # CAP_SYS_RESOURCE cannot raise it). The poolers get exactly what we got.
    plan.nofile = idle.raise_nofile(plan.nofile)
    if plan.nofile < max(plan.idle_counts) + 1000:
        sys.exit(f"the open files limit is {plan.nofile}: too low to hold "
                 f"{max(plan.idle_counts)} idle clients (raise `ulimit -Hn`)")
    if not args.no_build:
        deps.build_release(REPO)

    bench = Bench(plan, out_dir)
    bench.git_rev = deps.git_rev(REPO)
    bench.chart_script = os.path.join(BENCHES, "chart.py")
    bench.pg_version = proc.run([os.path.join(deps.PGBIN, "postgres"), "--version"],
                                timeout=10).stdout.strip()

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    def too_long(_signum, _frame):
        raise TimeoutError(f"the benchmark ran past its limit of {plan.time_limit} s")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(plan.time_limit)
    started = time.monotonic()
    ok = False
    try:
        bench.run()
        ok = True
    finally:
        signal.alarm(0)
        bench.say("stopping the poolers and PostgreSQL")
        bench.cleanup(args.keep_work)
    path, targets = summary.write_report(bench, time.monotonic() - started)
    print(f"\nreport: {os.path.relpath(path, os.getcwd())}")
    for t in targets:
        print(f"  {'MET    ' if t.met else 'NOT MET'} {t.name}: {t.measured} "
              f"(wanted {t.threshold}) {t.miss}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

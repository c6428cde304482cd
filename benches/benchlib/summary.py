"""The report of a run: tables of medians with the pgsluice/PgBouncer ratio, the
targets, the chart's data, machine facts and versions, how it was run, raw values."""

import datetime
import json
import os
import platform
import socket

from . import deps, poolers, proc, report
from .report import DIRECT, PGBOUNCER, PGSLUICE, Metric, median


def metrics_and_raw(bench):
    plan = bench.plan
    raw = []

    def metric(label, key, get, digits=0, unit="", lower=False, targets=report.TARGETS):
        values, per_rep, cells = {}, {}, []
        for t in report.TARGETS:
            results = bench.runs.get(key, {}).get(t, []) if t in targets else []
            vals = [get(r) for r in results]
            values[t], per_rep[t] = median(vals), vals
            cells.append(" / ".join(report.fmt(v, digits) for v in vals) if vals else "N/A")
        raw.append([f"{key}: {label}" + (f" [{unit}]" if unit else "")] + cells)
        return Metric(label, values, digits, unit, lower, per_rep)

    tps = lambda r: r.tps  # noqa: E731
    p50 = lambda r: r.p50_ms  # noqa: E731
    p99 = lambda r: r.p99_ms  # noqa: E731
    cpu = lambda r: r.cpu_us_per_tx  # noqa: E731
    kernel = lambda r: r.kernel_us_per_tx  # noqa: E731
    sections, by_name = [], {}
    for mode, counts in (("simple", plan.simple_clients), ("extended", plan.extended_clients)):
        rows = []
        for c in counts:
            key = f"S-{mode}-{c}"
            rows.append(metric(f"{c} clients: TPS", key, tps))
            rows.append(metric(f"{c} clients: latency p50", key, p50, 2, "ms", True))
            rows.append(metric(f"{c} clients: latency p99", key, p99, 2, "ms", True))
            by_name[f"tps-{mode}-{c}"], by_name[f"p99-{mode}-{c}"] = rows[-3], rows[-1]
        sections.append((f"Select-only (`pgbench -S -M {mode} -j 2 -T {plan.seconds}`), md5 auth",
                         rows))
    key = f"tpcb-{plan.tpcb_clients}"
    sections.append((f"TPC-B-like default script (`pgbench -j 2 -T {plan.seconds}`), md5 auth", [
        metric(f"{plan.tpcb_clients} clients: TPS", key, tps),
        metric(f"{plan.tpcb_clients} clients: latency p50", key, p50, 2, "ms", True),
        metric(f"{plan.tpcb_clients} clients: latency p99", key, p99, 2, "ms", True),
    ]))
    pooled = (PGBOUNCER, PGSLUICE)
    tls_rows = []
    for tls_key, clients, args in plan.tls_workloads():
        mode = args[-1]
        tls_rows.append(metric(f"-M {mode}, {clients} clients: TPS", tls_key, tps, 0, "", False,
                               pooled))
        tls_rows.append(metric(f"-M {mode}, {clients} clients: latency p99", tls_key, p99, 2,
                               "ms", True, pooled))
    sections.append((f"Select-only over TLS (`pgbench -S -j 2 -T {plan.seconds}` with "
                     "sslmode=require; both poolers with client_tls_sslmode = require and the "
                     "same P-256 certificate; servers in the clear), md5 auth", tls_rows))
    cpu_rows = []

    def cpu_metric(label, key, unit):
        total = metric(label, key, cpu, 1, unit, True, pooled)
        in_kernel = metric(f"{label}: of which in the kernel (stime)", key, kernel, 1, unit,
                           True, pooled)
        cpu_rows.extend((total, in_kernel))
        return total, in_kernel

    for mode in ("simple", "extended"):
        by_name[f"cpu-{mode}-50"], by_name[f"kernel-{mode}-50"] = cpu_metric(
            f"select-only -M {mode}, 50 clients", f"S-{mode}-50", "µs/transaction")
    cpu_metric(f"TPC-B, {plan.tpcb_clients} clients", key, "µs/transaction")
    for tls_key, clients, args in plan.tls_workloads():
        cpu_metric(f"select-only over TLS -M {args[-1]}, {clients} clients", tls_key,
                   "µs/transaction")
    for auth in ("md5", "scram"):
        cpu_metric(f"connection storm {auth.upper()}", f"storm-{auth}", "µs/connection")
    sections.append(("Pooler CPU (utime+stime from /proc/PID/stat, over the run, divided by "
                     "the transactions pgbench processed)", cpu_rows))
    storm_rows = []
    for auth, label in (("md5", "md5"), ("scram", "SCRAM-SHA-256")):
        m = metric(f"{label}: connections/s", f"storm-{auth}", tps)
        by_name[f"storm-{auth}"] = m
        storm_rows.append(m)
    sections.append((f"Connection storm (`pgbench -C -S -c {plan.storm_clients} -j 2 "
                     f"-T {plan.storm_seconds}`: one new login per transaction)", storm_rows))

    idle_rows = []
    for count in plan.idle_counts:
        values, cells = {DIRECT: None}, ["N/A"]
        for name in pooled:
            per = [grow / held for c, held, grow in _checkpoints(bench, name, count) if held]
            values[name] = median(per)
            cells.append(" / ".join(f"{v:.2f}" for v in per) if per else "N/A")
        raw.append([f"idle-{count}: RSS growth per client [KiB]"] + cells)
        m = Metric(f"{count:,} idle clients: RSS growth per client", values, 2, "KiB", True)
        by_name[f"idle-{count}"] = m
        idle_rows.append(m)
    top = max(plan.idle_counts)
    values = {DIRECT: None}
    for name in pooled:
        held = [h for c, h, g in _checkpoints(bench, name, top)]
        values[name] = min(held) if held else None
    idle_rows.append(Metric(f"idle clients held at once (least of the repetitions, of {top:,})",
                            values))
    sections.append(("Idle authenticated clients (fresh pooler process, RSS from /proc/PID/"
                     "status before and after, md5 login, held open)", idle_rows))
    return sections, by_name, raw


def _checkpoints(bench, name, count):
    return [cp for o in bench.idle.get(name, []) for cp in o["checkpoints"] if cp[0] == count]


def build_targets(bench, by_name):
    plan = bench.plan
    t = []
    for mode in ("simple", "extended"):
        t.append(report.ratio_target(f"select-only TPS, 50 clients, -M {mode}",
                                     by_name.get(f"tps-{mode}-50"), at_least=1.10))
    for mode in ("simple", "extended"):
        target = report.ratio_target(f"pooler CPU per transaction, select-only 50 clients, "
                                     f"-M {mode}", by_name.get(f"cpu-{mode}-50"), at_most=0.75)
        floor = _kernel_floor(by_name.get(f"cpu-{mode}-50"), by_name.get(f"kernel-{mode}-50"))
        if not target.met and floor is not None:
            target.miss += f"; pgsluice's kernel time alone is {floor:.2f}× PgBouncer's total"
        t.append(target)
    for auth, label in (("md5", "md5"), ("scram", "SCRAM-SHA-256")):
        t.append(report.ratio_target(f"connection storm, {label}", by_name.get(f"storm-{auth}"),
                                     at_least=1.0))
    top = max(plan.idle_counts)
    m = by_name.get(f"idle-{top}")
    kib = m.values.get(PGSLUICE) if m else None
    if kib is None:
        t.append(report.Target(f"pgsluice memory per idle client ({top:,} clients)",
                               "≤ 1.5 KiB", "not measured", False, "no data"))
    else:
        t.append(report.Target(f"pgsluice memory per idle client ({top:,} clients)", "≤ 1.5 KiB",
                               f"{kib:.2f} KiB (PgBouncer {report.fmt(m.values.get(PGBOUNCER), 2)})",
                               kib <= 1.5, "" if kib <= 1.5 else f"over by {kib - 1.5:.2f} KiB "
                               f"({(kib - 1.5) / 1.5:.0%})"))
    outcomes = bench.idle.get(PGSLUICE, [])
    held = [o["held"] for o in outcomes]
    errors = sum(len(o["errors"]) + o["lost"] for o in outcomes)
    ok = bool(outcomes) and min(held) >= top and errors == 0 and all(
        o["proof"] and o["alive"] for o in outcomes)
    t.append(report.Target(f"{top:,} idle clients held by pgsluice, no errors, still answers",
                           f"{top:,} held, 0 errors", f"{min(held) if held else 0:,} held, "
                           f"{errors} errors/lost", ok, "" if ok else "see Idle clients"))
    for mode in ("simple", "extended"):
        key = f"p99-{mode}-200"
        if key in by_name:
            t.append(report.ratio_target(f"p99 latency, select-only 200 clients, -M {mode}",
                                         by_name[key], at_most=1.0))
    return t


def _kernel_floor(total, in_kernel):
    """pgsluice's stime per transaction as a ratio to PgBouncer's whole CPU: the least
    the CPU ratio could be if pgsluice's own code cost nothing."""
    if total is None or in_kernel is None:
        return None
    ours, theirs = in_kernel.values.get(PGSLUICE), total.values.get(PGBOUNCER)
    return ours / theirs if ours is not None and theirs else None


def idle_notes(bench):
    notes = []
    for name in (PGBOUNCER, PGSLUICE):
        for i, o in enumerate(bench.idle.get(name, []), 1):
            cps = ", ".join(f"{held:,} held → +{grow:,} KiB" for c, held, grow in o["checkpoints"])
            notes.append(f"{name}, repetition {i}: base RSS {o['base_kib']:,} KiB; {cps}; "
                         f"{len(o['errors'])} login errors, {o['lost']} dropped while held; "
                         f"{o['proof'] or 'no proof query ran'}")
    return notes


def machine_facts(bench):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    debian = open("/etc/debian_version").read().strip() if os.path.exists(
        "/etc/debian_version") else "?"
    pgb_version = proc.run([poolers.PGBOUNCER_BIN, "--version"], timeout=10).stdout.splitlines()[0]
    return [
        ("host", socket.gethostname()),
        ("CPU", f"{cpu}, {os.cpu_count()} cores (nproc)"),
        ("memory", f"{mem_kib / 1024 / 1024:.1f} GiB"),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("OS", f"Debian {debian}"),
        ("PostgreSQL", bench.pg_version),
        ("PgBouncer", f"{pgb_version} ({poolers.PGBOUNCER_BIN}, Debian package)"),
        ("pgsluice", f"{bench.sluice_version}, git {bench.git_rev}, cargo build --release"),
        ("pgbench", proc.run([os.path.join(deps.PGBIN, "pgbench"), "--version"],
                             timeout=10).stdout.strip()),
        ("Python (client for idle test)", platform.python_version()),
    ]


def run_notes(bench):
    plan = bench.plan
    common = ", ".join(f"`{k} = {v}`" for k, v in poolers.COMMON_SETTINGS.items())
    return [
        f"One PostgreSQL 15 for everything: temporary data directory, 127.0.0.1, "
        f"`fsync=off`, `max_connections={plan.max_connections}`, other settings default "
        f"(shared_buffers 128MB); `pgbench -i -s {plan.scale}` once. Direct runs above "
        f"{plan.direct_max_clients} clients would exceed max_connections and are N/A.",
        f"Both poolers: {common}, `unix_socket_dir` = the run's directory; the same ini "
        "apart from the port, started directly (not as a service) as the `postgres` OS user "
        f"via `prlimit --nofile={plan.nofile}:{plan.nofile}`"
        + (" (the hard limit here, which this container cannot raise)"
           if plan.nofile < 65536 else "")
        + ", stderr to a file, no other command-line options: both serve from one "
        "thread (PgBouncer always; pgsluice by default, `--threads 1`). Logging "
        "of connections and disconnections is off for both to keep it out of the "
        "measurement; errors still logged.",
        "Auth: PostgreSQL's pg_hba says md5 for 127.0.0.1. Role `bench` has its password "
        "stored as md5, role `bench_scram` as a SCRAM-SHA-256 verifier. userlist.txt holds "
        "both secrets exactly as stored in pg_authid (md5 hash; SCRAM verifier), the same "
        "file for both poolers. Throughput, CPU, idle and the md5 storm run with "
        "`auth_type = md5` as `bench` (client→pooler md5, pooler→server md5 with the hash). "
        "The SCRAM storm restarts both poolers with `auth_type = scram-sha-256` and runs as "
        "`bench_scram` (client→pooler SCRAM, pooler→server SCRAM pass-through with the "
        "verifier). Direct runs use the same roles, so PostgreSQL does md5 resp. SCRAM. "
        "libpq with `sslmode=disable` and `gssencmode=disable` for every target.",
        f"pgbench runs as root with `-n -j 2` (`-j 1` for 1 client) for {plan.seconds} s "
        f"each ({plan.storm_seconds} s for storms) over TCP to 127.0.0.1. TPS is pgbench's "
        "figure without initial connection time (with -C, including the reconnections). "
        "Latency percentiles are computed from pgbench's per-transaction logs "
        "(`-l --log-prefix`), nearest rank over all transactions of a run.",
        "Order: each workload runs against direct PostgreSQL, PgBouncer, pgsluice in turn, "
        f"then the next workload; the whole list is repeated {plan.reps} time(s). Both "
        "poolers are up during all runs (each holding its own pool of server connections).",
        "Targets: a ratio target is judged on the ratio of the medians; beside it, the "
        "ratio within each repetition (the two poolers' runs of a repetition are seconds "
        "apart) and how many of those meet the target.",
        "Pooler CPU: utime+stime of the pooler's process from /proc/PID/stat (clock ticks "
        f"of {proc.CLK_TCK} Hz) before and after each pgbench run, divided by the "
        "transactions pgbench processed (includes the pooler's share of the clients' logins); "
        "the stime part alone is given too: the kernel's work on the pooler's system calls, "
        "on loopback TCP including delivery to the process at the other end.",
        f"Idle clients: per repetition each pooler is restarted (same ini), one client logs "
        f"in and runs `SELECT 1`, then VmRSS is read; an asyncio client "
        f"(benches/benchlib/idle.py: v3 startup + md5, no driver) logs in "
        f"{', '.join(f'{c:,}' for c in plan.idle_counts)} clients cumulatively over "
        "127.0.0.1, 64 logins in flight at most, and holds them idle; 1 s after each "
        "count VmRSS is read again; the growth divided by the clients held is KiB/client. At "
        "the last count the first and last held clients run `SELECT 1` and one more new "
        "connection runs a query, while all are held.",
        "SCRAM storm: each login costs the client (libpq) a PBKDF2 of the password with "
        "4096 iterations, which dominates on 2 cores; the poolers only check the proof "
        "against the stored verifier, so the connections/s of the two poolers sit close "
        "together and the pooler CPU per connection says more.",
        "The machine runs pgbench, the pooler and PostgreSQL on the same 2 cores: the "
        "numbers compare the poolers under the same contention, not absolute capacity.",
    ]


def write_report(bench, elapsed):
    plan = bench.plan
    os.makedirs(bench.out_dir, exist_ok=True)
    date = datetime.date.today().isoformat()
    host = socket.gethostname()
    stem = f"{date}-{host}"
    md_path = os.path.join(bench.out_dir, stem + ".md")
    png_name = stem + ".png"
    sections, by_name, raw = metrics_and_raw(bench)
    targets = build_targets(bench, by_name)

    chart = {"title": f"pgsluice vs PgBouncer 1.18 vs direct PostgreSQL 15, pgbench -S, "
                      f"{host}, {date} ({'quick' if plan.quick else 'full'} run, medians)",
             "panels": []}
    for mode, counts in (("simple", plan.simple_clients), ("extended", plan.extended_clients)):
        if len(counts) < 2 and mode != "simple":
            continue  # one point is no curve (quick mode)
        series = {}
        for name in report.TARGETS:
            series[name] = [median([r.tps for r in bench.runs.get(f"S-{mode}-{c}", {})
                                    .get(name, [])]) for c in counts]
        chart["panels"].append({"title": f"select-only, -M {mode}", "clients": counts,
                                "series": series})
    chart["note"] = (f"transaction pooling, default_pool_size 20, md5 auth; direct PostgreSQL "
                     f"N/A above {plan.direct_max_clients} clients (max_connections "
                     f"{plan.max_connections}); {plan.reps} repetition(s) of {plan.seconds} s")
    chart_ok = deps.draw_chart(chart, os.path.join(bench.out_dir, png_name),
                               bench.chart_script)
    if not chart_ok:
        bench.problems.append("the chart could not be drawn (matplotlib missing?)")

    notes = run_notes(bench)
    foreign = [(c, run) for c, run in bench.foreign if c is not None]
    if foreign:
        worst = max(foreign)
        busy = sum(1 for c, _ in foreign if c > 0.2)
        notes.append(
            "Load from outside the benchmark (the machine's process and steal CPU time from "
            "/proc/stat minus that of this script's process tree and PostgreSQL's, per "
            "second of the run): median "
            f"{median([c for c, _ in foreign]):.2f} cores over the {len(foreign)} measured "
            f"runs, at most {worst[0]:.2f} cores ({worst[1]}); {busy} run(s) above 0.2 "
            f"cores. Before each run the benchmark waited up to 10 s for other load to drop "
            f"below 0.15 cores, {plan.quiet_budget} s at most in all; it waited "
            f"{bench.quiet_waited:.0f} s." + (" Other work on the machine perturbed these runs: compare the raw "
                        "values, and re-run on a quiet machine for firm numbers."
                        if busy else ""))
    problems = bench.problems[:60] or [
        "None: every pgbench run exited 0 with 0 failed transactions, every idle client "
        "logged in and stayed, and neither pooler logged a warning or an error."]
    meta = {
        "date": date, "hostname": host, "mode": "quick" if plan.quick else "full",
        "command": "make bench-quick" if plan.quick else "make bench",
        "reps": plan.reps, "elapsed": f"{elapsed / 60:.1f} min",
        "facts": machine_facts(bench),
    }
    load_rows = []
    for key, per in bench.runs.items():
        load_rows.append([key] + [
            " / ".join(report.fmt(r.foreign_cores, 2) for r in per.get(t, [])) or "N/A"
            for t in report.TARGETS])
    text = report.render(meta, sections, targets, raw, idle_notes(bench), notes, png_name,
                         load_rows, problems)
    with open(md_path, "w") as f:
        f.write(text)
    with open(os.path.join(bench.out_dir, stem + ".json"), "w") as f:
        json.dump({"chart": chart, "targets": [vars(t) for t in targets],
                   "runs": {key: {t: [vars(r) for r in rs] for t, rs in per.items()}
                            for key, per in bench.runs.items()},
                   "idle": bench.idle}, f, indent=1)
    return md_path, targets

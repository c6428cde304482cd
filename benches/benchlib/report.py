"""The results file: medians of the repetitions, the pgsluice/PgBouncer ratio, the
targets met or not, the machine and versions, and the raw values."""

import statistics

DIRECT, PGBOUNCER, PGSLUICE = "direct PostgreSQL", "PgBouncer", "pgsluice"
TARGETS = (DIRECT, PGBOUNCER, PGSLUICE)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def fmt(value, digits=0):
    if value is None:
        return "N/A"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


class Metric:
    """One table row: a workload, a value per target (medians), a direction."""

    def __init__(self, label, values, digits=0, unit="", lower_is_better=False, per_rep=None):
        self.label = label
        self.values = values  # target name -> median or None
        self.digits = digits
        self.unit = unit
        self.lower_is_better = lower_is_better
        self.per_rep = per_rep or {}  # target name -> one value per repetition, in run order

    @property
    def ratio(self):
        return ratio(self.values.get(PGSLUICE), self.values.get(PGBOUNCER))

    def paired_ratios(self):
        """pgsluice/PgBouncer within each repetition: the two runs next to each other in
        time, so their spread shows how much the machine's noise moves the ratio."""
        pairs = zip(self.per_rep.get(PGSLUICE, []), self.per_rep.get(PGBOUNCER, []))
        return [r for r in (ratio(a, b) for a, b in pairs) if r is not None]

    def cells(self):
        r = self.ratio
        better = "lower is better" if self.lower_is_better else "higher is better"
        ratio_text = "N/A" if r is None else f"{r:.2f} ({better})"
        label = f"{self.label} [{self.unit}]" if self.unit else self.label
        return [label] + [fmt(self.values.get(t), self.digits) for t in TARGETS] + [ratio_text]


class Target:
    def __init__(self, name, threshold, measured, met, miss):
        self.name, self.threshold, self.measured, self.met, self.miss = (
            name, threshold, measured, met, miss)


def ratio_target(name, metric, at_least=None, at_most=None):
    r = metric.ratio if metric else None
    if r is None:
        return Target(name, _bound(at_least, at_most), "not measured", False, "no data")
    if at_least is not None:
        met = r >= at_least
        miss = "" if met else f"short by {at_least - r:.3f} ({(at_least - r) / at_least:.1%})"
        meets = lambda x: x >= at_least  # noqa: E731
    else:
        met = r <= at_most
        miss = "" if met else f"over by {r - at_most:.3f} ({(r - at_most) / at_most:.1%})"
        meets = lambda x: x <= at_most  # noqa: E731
    measured = f"{r:.3f}"
    paired = metric.paired_ratios()
    if len(paired) > 1:
        measured += (f" (per repetition {' / '.join(f'{x:.2f}' for x in paired)}: "
                     f"{sum(1 for x in paired if meets(x))} of {len(paired)} meet it)")
    return Target(name, _bound(at_least, at_most), measured, met, miss)


def _bound(at_least, at_most):
    return f"ratio ≥ {at_least:.2f}" if at_least is not None else f"ratio ≤ {at_most:.2f}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render(meta, sections, targets, raw_rows, idle_notes, notes, chart_name, load_rows,
           problems):
    out = [f"# pgsluice vs PgBouncer — {meta['date']} on {meta['hostname']}", ""]
    out.append(f"Mode: **{meta['mode']}** (`{meta['command']}`), {meta['reps']} "
               f"repetition(s), interleaved direct → PgBouncer → pgsluice per workload; "
               f"every number below is the median of the repetitions. Wall time "
               f"{meta['elapsed']}.")
    out.append("")
    out.append("## Results")
    out.append("")
    header = ["workload", DIRECT, PGBOUNCER, PGSLUICE, "pgsluice/PgBouncer"]
    for title, metrics in sections:
        out.append(f"**{title}**")
        out.append("")
        out.append(table(header, [m.cells() for m in metrics]))
        out.append("")
    out.append(f"![TPS vs clients, select-only]({chart_name})")
    out.append("")
    out.append("## Targets")
    out.append("")
    rows = [[t.name, t.threshold, t.measured, "**met**" if t.met else "**not met**", t.miss]
            for t in targets]
    out.append(table(["target", "wanted", "measured", "", "miss"], rows))
    out.append("")
    met = sum(1 for t in targets if t.met)
    out.append(f"{met} of {len(targets)} targets met.")
    out.append("")
    if idle_notes:
        out.append("## Idle clients")
        out.append("")
        out += [f"- {n}" for n in idle_notes]
        out.append("")
    out.append("## Errors and oddities")
    out.append("")
    for p in problems:
        out.append(f"  - {p.strip()}" if p.startswith("    ") else f"- {p}")
    out.append("")
    out.append("## Machine and versions")
    out.append("")
    out.append(table(["", ""], [[k, v] for k, v in meta["facts"]]))
    out.append("")
    out.append("## How it was run")
    out.append("")
    out += [f"- {n}" for n in notes]
    out.append("")
    out.append("## Raw values (one per repetition, in run order)")
    out.append("")
    out.append(table(["workload", DIRECT, PGBOUNCER, PGSLUICE], raw_rows))
    out.append("")
    out.append("## Load from other processes during each run (cores, in run order)")
    out.append("")
    out.append(table(["workload", DIRECT, PGBOUNCER, PGSLUICE], load_rows))
    out.append("")
    return "\n".join(out)

"""Draw the TPS-vs-clients chart of a benchmark run from its JSON summary.

    python3 benches/chart.py DATA.json OUT.png

DATA.json: {"title": str, "note": str, "panels": [{"title": str, "clients": [int],
            "series": {"name": [tps or null, ...]}}]}
Run by benches/bench.py with an interpreter that has matplotlib (Debian's
python3-matplotlib when the running one has none).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "direct PostgreSQL": {"color": "#7f7f7f", "marker": "s", "linestyle": "--"},
    "PgBouncer": {"color": "#1f77b4", "marker": "o"},
    "pgsluice": {"color": "#d62728", "marker": "^"},
}


def main(data_path, out_path):
    with open(data_path) as f:
        data = json.load(f)
    panels = data["panels"]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        clients = panel["clients"]
        for name, values in panel["series"].items():
            points = [(c, v) for c, v in zip(clients, values) if v is not None]
            if not points:
                continue
            xs, ys = zip(*points)
            ax.plot(xs, ys, label=name, linewidth=2, markersize=7, **STYLE.get(name, {}))
        ax.set_xscale("log")
        ax.set_xticks(clients)
        ax.set_xticklabels([str(c) for c in clients])
        ax.minorticks_off()
        ax.set_xlabel("pgbench clients (-c), -j 2")
        ax.set_ylabel("transactions per second (median)")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.set_title(panel["title"])
        ax.legend(loc="lower right")
    fig.suptitle(data["title"], fontsize=11)
    if data.get("note"):
        fig.text(0.5, 0.01, data["note"], ha="center", fontsize=8, color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out_path, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])

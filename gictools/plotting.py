"""What every plotting verb shares: matplotlib on demand, PNGs written whole or not at all.

matplotlib is the optional 'plot' extra; it is imported only when a plot is drawn, and
the CLI checks for it (need_matplotlib) before the work, not after.
"""

from pathlib import Path

from gictools.errors import ConfigError
from gictools.outputs import AtomicOutput

MISSING = "--plot needs matplotlib: pip install 'gictools[plot]'"


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend; ConfigError if not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(MISSING) from None
    return plt


def outdir(path) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def save(fig, path: Path, files: list, **savefig) -> None:
    """Write fig as a PNG at path atomically, close it, and append path to files."""
    import matplotlib.pyplot as plt

    try:
        with AtomicOutput(path) as out:
            fig.savefig(out.file, format="png", **savefig)
    finally:
        plt.close(fig)
    files.append(path)


# --- what every plot shares: numbers as people write them, legends off the data -------------
def human(v: float, top: float | None = None) -> str:
    """A tick label without offsets or exponents, scaled by the axis' largest value top
    (default v) so that one axis uses one unit: 950, 12,000; 500k, 1.5M; 2G."""
    a = abs(top if top is not None else v)
    for above, scale, suffix in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e5, 1e3, "k")):
        if a >= above:
            return f"{v / scale:g}{suffix}"
    return f"{v:,.0f}" if float(v).is_integer() or a >= 100 else f"{v:g}"


def plain_ticks(axis, integer: bool = False) -> None:
    """Tick labels as plain numbers (no `1e6` offset, no 10^x on a log axis, no minor
    labels); integer=True: ticks only at whole numbers (counts)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    if axis.get_scale() == "log":  # 1, 2, 5, 10, 20, 50, ...: enough labels to read a value
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    elif integer:
        axis.set_major_locator(MaxNLocator(integer=True))

    def label(v: float, _pos) -> str:
        lo, hi = axis.get_view_interval()
        return human(v, max(abs(lo), abs(hi)))

    axis.set_major_formatter(FuncFormatter(label))
    axis.set_minor_formatter(NullFormatter())


def percent_ticks(axis) -> None:
    from matplotlib.ticker import PercentFormatter

    axis.set_major_formatter(PercentFormatter(1.0, decimals=None))


def legend_outside(ax, **kw) -> None:
    """The legend right of the axes, where it covers no data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize=8, **kw)


LINE_STYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (1, 1)))
MARKERS = ("o", "s", "^", "v", "D", "x")


def distinct(k: int, n: int, points: int) -> dict:
    """Line style for the k-th of n series that may coincide: its own dash pattern and
    marker, markers at a phase of their own (so k's are not drawn on top of j's), wider
    lines below narrower ones."""
    step = max(1, points // 10)
    return {
        "linestyle": LINE_STYLES[k % len(LINE_STYLES)],
        "marker": MARKERS[k % len(MARKERS)],
        "markevery": (min(points - 1, k * step // max(n, 1)) if points else 0, step),
        "lw": 1.2 + 1.2 * (n - 1 - k) / max(n - 1, 1),
        "ms": 6,
        "zorder": 2 + k,
    }


def time_share(names: list[str], shares: list[dict], title: str, out: Path, files: list) -> None:
    """time_share.png: one stacked bar per run of where its injectors' time went (model
    steps, lock waits, waiting for a host CPU), as compare and predict report it."""
    import numpy as np

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    labels: list[str] = []
    for ts in shares:
        labels += [f"step {k}" for k in ts.get("steps", {}) if f"step {k}" not in labels]
        labels += [f"wait {k}" for k in ts.get("locks", {}) if f"wait {k}" not in labels]
    if any(ts.get("cpu_wait") for ts in shares):
        labels.append("wait host CPU")
    bottom = np.zeros(len(shares))
    hatches = ("", "//", "..", "xx", "\\\\", "++")
    for n, lab in enumerate(labels):
        kind, key = lab.split(" ", 1)
        if lab == "wait host CPU":
            vals = [ts.get("cpu_wait", 0.0) for ts in shares]
        else:
            group = "steps" if kind == "step" else "locks"
            vals = [ts.get(group, {}).get(key, 0.0) for ts in shares]
        ax.bar(names, vals, 0.6, bottom=bottom, label=lab, hatch=hatches[n % len(hatches)])
        bottom += np.array(vals)
    ax.set_xlim(-0.5 - 0.5 * (len(names) == 1), len(names) - 0.5 + 0.5 * (len(names) == 1))
    ax.set_ylabel("share of injector time")
    percent_ticks(ax.yaxis)
    ax.set_title(title, fontsize=10)
    legend_outside(ax)
    save(fig, out / "time_share.png", files, dpi=100, bbox_inches="tight")


def predict_plots(r: dict, where) -> list[str]:
    """predict --plot, as compare --plot draws its presets: time_share.png (where the
    injectors' time went) and lpis.png (predicted LPIs/s, min..max over the seeds, and
    across each unfitted parameter's range with --bands)."""
    plt = pyplot()
    out = outdir(where)
    files: list = []
    c = r["config"]
    work = f"lpi-stress -v {c['vcpus']} -d {c['devices']} -e {c['events']} -i {c['iterations']}"
    run = f"{r['preset']}, {r['interleaving']}, {r['host_cpus']} host CPUs"
    time_share([r["preset"]], [r["time_share"]], f"Where the time went\n{work}, {run}", out, files)
    rows = [(f"{r['preset']} (seeds {_seeds(r)})", r)]
    rows += [(f"{b['parameter']} = {b['value']:g}", b) for b in r.get("bands", [])]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.6))
    mid = [x["lpis_per_sec"] for _, x in rows]
    lo = [x["lpis_per_sec"] - x.get("lpis_per_sec_min", x["lpis_per_sec"]) for _, x in rows]
    hi = [x.get("lpis_per_sec_max", x["lpis_per_sec"]) - x["lpis_per_sec"] for _, x in rows]
    # points, not bars from 0: the parameters move the prediction by a few percent
    y = list(range(len(rows)))
    ax.errorbar(mid, y, xerr=[lo, hi], fmt="o", capsize=4, color="C0")
    ax.axvline(mid[0], ls=":", color="C3", lw=1, label="the prediction")
    ax.set_yticks(y, [n for n, _ in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_xlabel("predicted LPIs/s (point: median; whiskers: min..max over seeds)")
    plain_ticks(ax.xaxis)
    ax.set_title(f"Predicted LPIs/s\n{work}, {run}", fontsize=10)
    fig.tight_layout()
    save(fig, out / "lpis.png", files, dpi=100)
    return [str(f) for f in files]


def _seeds(r: dict) -> str:
    seeds = r.get("seeds") or []
    if not seeds:
        return "lock-step"
    return f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])

"""The two published vgic_lpi_stress tables, their machines' host profiles, held-out checks
and the fit of a host profile from measured rows.

Both tables are by the series' author, on two unnamed arm64 machines:
- `lpi-2024a`: "KVM: arm64: Improvements to LPI injection" v2 cover letter (13 Feb 2024),
  v6.8-rc1 vs the series (kvm@vger <20240213093250.3960069-1-oliver.upton@linux.dev>; the
  table is in docs/latency-model.md §4 "Rows");
- `lpi-2024b`: "KVM: arm64: Transition to a per-ITS translation cache" v3 cover letter
  (22 Apr 2024), v6.8-rc1 vs the series merged for v6.10, quoted in mainline merge commit
  3d5689e01a42 (kvmarm/next "Merge branch kvm-arm64/lpi-xa-cache";
  https://android-kvm.googlesource.com/linux/+/refs/heads/kvmarm/next).
Both ran the 2024 selftest (every LPI on vCPU 0, never acknowledged).
"""

import statistics
from dataclasses import dataclass

from gictools.errors import ConfigError
from gictools.latency.hosts import PARAMETERS, Host, resolve_host
from gictools.latency.presets import load_preset


@dataclass(frozen=True)
class Row:
    machine: str  # host profile name
    config: tuple  # (v, d, e, i)
    preset: str  # the kernel, as a bundled preset
    measured: float  # LPIs/s

    @property
    def label(self) -> str:
        v, d, e, i = self.config
        return f"-v {v} -d {d} -e {e} -i {i} {self.preset}"


def _rows(machine, table):
    return tuple(Row(machine, cfg, k, m) for cfg, byk in table.items() for k, m in byk.items())


PUBLISHED = _rows(
    "lpi-2024a",
    {
        (1, 1, 1, 1_000_000): {"v6.8-rc1": 780151, "series-v2": 1255291},
        (16, 16, 16, 10_000): {"v6.8-rc1": 437082, "series-v2": 5078226},
        (64, 64, 1, 100_000): {"v6.8-rc1": 295097, "series-v2": 5565965},
    },
) + _rows(
    "lpi-2024b",
    {
        (1, 1, 1, 1_000_000): {"v6.8-rc1": 2063296.81, "v6.10": 1362602.35},
        (16, 16, 16, 10_000): {"v6.8-rc1": 610678.33, "v6.10": 5200910.01},
        (16, 16, 17, 10_000): {"v6.8-rc1": 678361.53, "v6.10": 5890675.51},
        (32, 32, 1, 100_000): {"v6.8-rc1": 580918.96, "v6.10": 8304552.67},
        (1, 1, 17, 1000): {"v6.8-rc1": 1512443.94, "v6.10": 1425953.8},
    },
)

# steady rates need far fewer injections than the tables ran: the checks scale -i down to
# at least this many per thread (the selftest's rate is d*e*i / elapsed either way)
CHECK_PER_THREAD = 8000


def check_config(cfg, per_thread=CHECK_PER_THREAD):
    v, d, e, i = cfg
    return (v, d, e, max(1, min(i, -(-per_thread // e))))


def rows_of(machine=None):
    return [r for r in PUBLISHED if machine is None or r.machine == machine]


def held_out(row, host=None) -> bool:
    """True when the row did not fix any parameter of its machine's profile."""
    h = resolve_host(host or row.machine)
    return row.label not in h.fitted_on


def predict_row(row, host=None, *, seeds=3, per_thread=CHECK_PER_THREAD, jobs=None):
    from gictools.analysis.predict import predict_lpi_stress

    p = load_preset(row.preset, host=host or row.machine)
    cfg = check_config(row.config, per_thread) if per_thread else row.config
    return predict_lpi_stress(*cfg, p, selftest="2024", seeds=seeds, jobs=jobs)


def residuals(machine=None, host=None, **kw):
    """[(row, predicted median, predicted / measured, held out)] for a machine's rows."""
    out = []
    for row in rows_of(machine):
        r = predict_row(row, host, **kw)
        v = r["lpis_per_sec"]
        out.append((row, v, v / row.measured, held_out(row, host)))
    return out


def kernel_ratios(results):
    """[(machine, config, kernel pair, predicted ratio, measured ratio)] for rows of two
    kernels at the same machine and config (the later kernel over v6.8-rc1)."""
    by = {(r.machine, r.config, r.preset): (r, v) for r, v, *_ in results}
    out = []
    for (m, cfg, k), (row, v) in by.items():
        base = by.get((m, cfg, "v6.8-rc1"))
        if k != "v6.8-rc1" and base is not None:
            out.append((m, cfg, f"{k}/v6.8-rc1", v / base[1], row.measured / base[0].measured))
    return out


def fit_host(rows, start, free, *, seeds=1, per_thread=2000, rounds=3, tie=None):
    """A host profile fitted to measured rows: each parameter of `free` in turn (rounds
    times) by bisection on log scale, minimising the largest |log(predicted / measured)|
    over `rows`. start: a Host (or name) giving the other parameters; tie: {param:
    (other, factor)} keeps param = factor x other (for parameters no row separates).
    Each evaluation predicts every row (`per_thread` injections per thread, `seeds`
    seeds): a few minutes for four rows. Returns the fitted Host."""
    import math

    h = resolve_host(start)
    bad = [x for x in free if x not in PARAMETERS]
    if bad or not rows:
        raise ConfigError(f"fit_host: free parameters among {', '.join(PARAMETERS)}, rows given")
    tie = tie or {}

    def tied(host):
        return host.with_(**{k: getattr(host, o) * f for k, (o, f) in tie.items()})

    def err(host):
        worst = 0.0
        for row in rows:
            r = predict_row(row, host, seeds=seeds, per_thread=per_thread, jobs=1)
            worst = max(worst, abs(math.log(r["lpis_per_sec"] / row.measured)))
        return worst

    h = tied(h)
    for _ in range(rounds):
        for k in free:
            x0 = getattr(h, k) or 1e-3
            lo, hi = math.log(x0 / 4), math.log(x0 * 4)
            for _ in range(12):  # golden-section on log x
                a = hi - (hi - lo) * 0.618
                b = lo + (hi - lo) * 0.618
                if err(tied(h.with_(**{k: math.exp(a)}))) <= err(tied(h.with_(**{k: math.exp(b)}))):
                    hi = b
                else:
                    lo = a
            h = tied(h.with_(**{k: math.exp((lo + hi) / 2)}))
    return h.with_(free=tuple(free), fitted_on=tuple(r.label for r in rows))


def band_check(row, host=None, *, seeds=3, per_thread=CHECK_PER_THREAD, jobs=None) -> dict:
    """The row's prediction and --bands envelope on its machine's profile: low, high,
    which parameter sets each end, and whether the measurement lies inside."""
    from gictools.analysis.predict import band_envelope, predict_bands

    p = load_preset(row.preset, host=host or row.machine)
    cfg = check_config(row.config, per_thread) if per_thread else row.config
    r = predict_row(row, host, seeds=seeds, per_thread=per_thread, jobs=jobs)
    v, d, e, i = cfg
    bands = predict_bands(v, d, e, i, p, seeds=seeds, selftest="2024", jobs=jobs)
    env = band_envelope(r, bands)
    env["predicted"] = r["lpis_per_sec"]
    env["contains"] = env["low"] <= row.measured <= env["high"]
    return env


def summarize(results) -> dict:
    """Worst ratios, overall and held out only."""
    ratios = [q for _, _, q, _ in results]
    held = [q for _, _, q, h in results if h]
    spread = lambda xs: max(max(xs), 1 / min(xs)) if xs else None  # noqa: E731
    return {
        "rows": len(results),
        "worst_factor": spread(ratios),
        "held_out": len(held),
        "worst_held_out_factor": spread(held),
        "median_ratio": statistics.median(ratios) if ratios else None,
    }


__all__ = ["PUBLISHED", "Row", "Host", "fit_host", "kernel_ratios", "residuals"]

"""Host profiles: the costs that belong to the machine, not to the kernel's injection path.

A preset (gictools.latency.presets) says what a kernel does to inject an MSI: its steps,
which locks they hold, how many atomics on shared lines each does. Its step costs are in
reference ns: the ns of the reference machine's core (`lpi-2024a`, core = 1.0). A host
profile says what that costs on one machine:

- `core`: multiplies every step's ns (and the list walk's per-entry cost): one core's
  speed at the kernel's code;
- `line_ns`: a cache line last written by another core (the list walk's remote entries);
- `handoff_ns`: a spinlock or mutex passing to a waiter on another core (every lock whose
  preset says handoff_ns = "host");
- `atomic_ns`: one atomic on a line every injector shares: the target vCPU's request bit
  (kvm_make_request) and the kick's cmpxchg of vcpu->mode (kvm_vcpu_kick). The line
  serializes them (a FIFO section without hand-off), not a lock;
- `flush_ns`, `nr_lr`: the target vCPU's own loop. Each kick makes it exit and rerun
  vgic_flush_lr_state, which walks its pending LPIs under their irq_locks and, above
  nr_lr of them, sorts them first (vgic_sort_ap_list, list_sort: ~n log2 n compares,
  each locking two LPIs). flush_ns is the part of each LPI visited or compared during
  which the injectors wait for the vCPU's lines;
- `cpus`, `hz`: host CPUs and CONFIG_HZ (grace periods).

Bundled profiles: gictools/latency/hosts/*.toml, one per machine of a published table.
Another machine is described by copying one and fitting its free parameters from a few
measured rows (gictools.analysis.hostfit, docs/latency-model.md "Host profiles").
"""

import math
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from gictools.errors import ConfigError
from gictools.files import parse_toml, read_toml

BUNDLED_HOSTS = ("lpi-2024a", "lpi-2024b")
DEFAULT_HOST = "lpi-2024a"
PARAMETERS = ("core", "line_ns", "handoff_ns", "atomic_ns", "flush_ns")
MAX_NS = 1e7


@dataclass(frozen=True)
class Host:
    name: str
    core: float = 1.0
    line_ns: float = 34.68
    handoff_ns: float = 173.4
    atomic_ns: float = 89.85
    flush_ns: float = 0.0
    nr_lr: int = 4
    cpus: int = 128
    hz: int = 250
    description: str = ""
    free: tuple = ()  # the parameters fitted from this machine's rows
    fitted_on: tuple = ()  # those rows ("-v 1 -d 1 -e 1 -i 1000000 v6.8-rc1", ...)
    source: str = ""

    def flush_work(self, pending: int) -> float:
        """LPIs the target vCPU's flush visits or compares with `pending` on its ap_list:
        the walk, plus list_sort's ~n log2 n compares above nr_lr (vgic_flush_lr_state)."""
        if pending <= 0:
            return 0.0
        n = float(pending)
        return n + (n * math.log2(n) if pending > self.nr_lr else 0.0)

    def with_(self, **changes) -> "Host":
        """A copy with some parameters changed (fits and --bands)."""
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            **{k: getattr(self, k) for k in PARAMETERS},
            "nr_lr": self.nr_lr,
            "cpus": self.cpus,
            "hz": self.hz,
            "free": list(self.free),
            "fitted_on": list(self.fitted_on),
        }


def _num(where, v, lo=0.0, hi=MAX_NS):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise ConfigError(f"{where}: expected a number, got {v!r}")
    if not lo <= v <= hi:
        raise ConfigError(f"{where}: {v!r} is outside {lo:g}..{hi:g}")
    return float(v)


def _int(where, v, lo, hi):
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"{where}: an integer from {lo} to {hi}, got {v!r}")
    return v


def parse_host(data: dict, src: str = "<host>") -> Host:
    """Validate a decoded host table; every error names the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: expected a table")
    allowed = (*PARAMETERS, "name", "description", "nr_lr", "cpus", "hz", "free", "fitted_on")
    extra = set(data) - set(allowed)
    if extra:
        raise ConfigError(
            f"{src}: unknown key(s) {', '.join(sorted(extra))} (allowed: {', '.join(allowed)})"
        )
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{src}: name: a non-empty string, got {name!r}")
    vals = {}
    for k in PARAMETERS:
        if k in data:
            lo = 1e-3 if k == "core" else 0.0
            vals[k] = _num(f"{src}: {k}", data[k], lo, 1e3 if k == "core" else MAX_NS)
    for k, (lo, hi) in {"nr_lr": (1, 16), "cpus": (1, 1 << 20), "hz": (1, 10_000)}.items():
        if k in data:
            vals[k] = _int(f"{src}: {k}", data[k], lo, hi)
    for k in ("free", "fitted_on"):
        v = data.get(k, [])
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ConfigError(f"{src}: {k}: a list of strings")
        vals[k] = tuple(v)
    bad = [x for x in vals["free"] if x not in PARAMETERS]
    if bad:
        raise ConfigError(f"{src}: free: {', '.join(bad)} not among {', '.join(PARAMETERS)}")
    return Host(name=name, description=str(data.get("description", "")), source=src, **vals)


def load_host(name: str | None = None, path=None) -> Host:
    """A bundled host profile by name (default lpi-2024a), or a TOML file."""
    if path is not None:
        src = str(Path(path))
        data = read_toml(path)
    else:
        name = name or DEFAULT_HOST
        if name not in BUNDLED_HOSTS:
            raise ConfigError(f"unknown host profile {name!r} (known: {', '.join(BUNDLED_HOSTS)})")
        src = f"bundled:{name}"
        text = (resources.files("gictools.latency") / "hosts" / f"{name}.toml").read_text(
            encoding="utf-8"
        )
        data = parse_toml(text, src)
    return parse_host(data, src)


def resolve_host(host) -> Host:
    """A Host, a bundled name, a path to a TOML file, or None (the default)."""
    if isinstance(host, Host):
        return host
    if host is None or host in BUNDLED_HOSTS:
        return load_host(host)
    if isinstance(host, (str, Path)) and str(host).endswith(".toml"):
        return load_host(path=host)
    return load_host(str(host))


def apply_host(preset, host):
    """The preset's steps priced on `host`: step and per-entry walk costs x core, plus
    each step's atomics x atomic_ns; locks
    and walk costs the preset leaves to the host ("host") filled in; host CPUs and HZ
    from the profile (a preset with unlimited CPUs keeps them unlimited)."""
    h = resolve_host(host)
    steps = {
        k: replace(s, ns=s.ns * h.core + s.atomics * h.atomic_ns) for k, s in preset.steps.items()
    }
    locks = {
        k: (replace(lk, handoff_ns=h.handoff_ns) if lk.handoff_ns is None else lk)
        for k, lk in preset.locks.items()
    }
    line = h.line_ns if preset.walk_remote_line_ns is None else preset.walk_remote_line_ns
    return replace(
        preset,
        steps=steps,
        locks=locks,
        walk_per_entry_ns=preset.walk_per_entry_ns * h.core,
        walk_remote_line_ns=line,
        host_cpus=None if preset.host_cpus is None else h.cpus,
        rcu=replace(preset.rcu, hz=h.hz),
        host=h,
    )

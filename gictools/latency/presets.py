"""Latency presets: a kernel's MSI injection path as data (TOML), loaded and validated.

A preset pairs a translation-cache policy with the steps its kernel takes to
inject one MSI, what each step costs (ns) and which serialized sections (locks)
it holds. The bundled presets live in gictools/latency/presets/*.toml; a user
copies one, edits it and passes it with --preset-file. The file format is
documented in the bundled files themselves and in docs/latency-model.md.
"""

from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from gictools.errors import ConfigError
from gictools.files import parse_toml, read_toml
from gictools.model.cache import Outcome, policy_class, policy_names

BUNDLED = ("fixed-v0", "v6.8-rc1", "series-v2", "v6.10")
# the preset a replay, compare or sweep uses when none is named: no contention, a fixed
# cost per cache outcome (a placeholder scale, not a calibrated model)
DEFAULT_PRESET = "fixed-v0"
MAX_NS = 1e10  # any one cost (a step, a hand-off, a wake-up, a grace period): 10 s
MAX_EXTRA_TICKS = 1000.0
MAX_JITTER = 0.5
DEFAULT_JITTER = 0.05
LOCK_SCOPES = ("vm", "its", "vcpu")
LOCK_KINDS = ("spinlock", "mutex")
ACTIONS = ("lookup", "fill")
# Cache outcomes a path can be given for (gictools.model.cache.Outcome, by path name)
OUTCOMES = tuple(o.path for o in Outcome)


@dataclass(frozen=True)
class Step:
    name: str
    ns: float  # fixed cost of the step
    locks: tuple  # serialized sections held while it runs, outer first
    walk: bool = False  # + the list-walk cost of the cache (list policies)
    action: str | None = None  # "lookup" / "fill": where the cache policy is consulted
    sleeps: bool = False  # the injector sleeps (gives up its CPU): synchronize_rcu()
    doc: str = ""
    grace_period: bool = False  # lasts one RCU grace period (drawn from [rcu]), not ns
    atomics: int = 0  # + this many atomics on the target vCPU's shared lines (host atomic_ns)
    flush: bool = False  # + the target vCPU's loop (its LR flush), shared by its injectors


@dataclass(frozen=True)
class Lock:
    name: str
    scope: str  # vm | its | vcpu: one instance per VM, per ITS, per target vCPU
    handoff_ns: float  # added when the section passes to a waiter on another CPU
    doc: str = ""
    kind: str = (
        "spinlock"  # spinlock (FIFO, waiters spin) or mutex (see gictools.latency.resources.Lock)
    )
    wake_ns: float = 10_000.0  # mutex: a sleeping waiter runs this long after its wake-up


@dataclass(frozen=True)
class Rcu:
    """synchronize_rcu()'s duration (gictools.latency.resources.GracePeriod): normal or expedited."""

    hz: int = 250  # CONFIG_HZ: the tick that drives normal grace periods
    expedited: bool = False  # rcupdate.rcu_expedited=1: IPI-driven grace periods
    extra_ticks: float = 1.0  # mean extra force-quiescent-state scans (Poisson)
    expedited_ns: float = 50_000.0  # mean expedited grace period


@dataclass(frozen=True)
class Preset:
    name: str
    cache: str  # cache policy name (gictools.model.cache.policy_class)
    kernel: str
    description: str
    host_cpus: int | None  # default host CPU count for the contention model (None: unlimited)
    steps: dict  # name -> Step
    locks: dict  # name -> Lock
    paths: dict  # outcome name -> tuple of step names
    walk_per_entry_ns: float  # list walk: each entry passed
    walk_remote_line_ns: float  # list walk: each entry passed that another CPU modified
    walk_moves_on_hit: bool  # the cache policy's moves_on_hit (LRU: a hit dirties the head)
    source: str = ""  # file it came from
    rcu: Rcu = Rcu()
    jitter: float = DEFAULT_JITTER  # stochastic runs: relative std of every step cost
    host: Any = None  # gictools.latency.hosts.Host the costs are priced on

    def path_of(self, outcome: str) -> tuple:
        """The step names an injection with this outcome walks: its own path, else the
        miss path (a hit always has its own)."""
        return self.paths.get(outcome) or self.paths["miss"]

    @property
    def contention_free(self) -> bool:
        """No locks, no list walk, no sleeping step, no jitter: every injection costs exactly
        the sum of its path's steps, whatever the others do (when CPUs are unlimited)."""
        return self.jitter == 0 and not any(
            s.locks or s.walk or s.sleeps or s.grace_period for s in self.steps.values()
        )

    def path_ns(self, outcome: str) -> float:
        """The sum of the step costs on the outcome's path."""
        return sum(self.steps[x].ns for x in self.path_of(outcome))

    def as_dict(self):
        """JSON-able parameters (Parquet metadata, --json output)."""
        return {
            "name": self.name,
            "cache": self.cache,
            "kernel": self.kernel,
            "host_cpus": self.host_cpus,
            "jitter": self.jitter,
            "host": None if self.host is None else self.host.as_dict(),
            "walk": {
                "per_entry_ns": self.walk_per_entry_ns,
                "remote_line_ns": self.walk_remote_line_ns,
                "moves_on_hit": self.walk_moves_on_hit,
            },
            "locks": {
                k: {"scope": v.scope, "kind": v.kind, "handoff_ns": v.handoff_ns}
                | ({"wake_ns": v.wake_ns} if v.kind == "mutex" else {})
                for k, v in self.locks.items()
            },
            "rcu": dict(self.rcu.__dict__),
            "steps": {
                k: {
                    "ns": v.ns,
                    "lock": list(v.locks),
                    "walk": v.walk,
                    "action": v.action,
                    "sleeps": v.sleeps,
                    "grace_period": v.grace_period,
                    "flush": v.flush,
                }
                for k, v in self.steps.items()
            },
            "paths": {k: list(v) for k, v in self.paths.items()},
        }

    def replace_costs(self, **changes):
        """A copy with some numbers changed: step__<name>=ns, lock__<name>=handoff_ns,
        wake__<lock>=wake_ns, rcu__<field>=value, walk_per_entry_ns=...,
        walk_remote_line_ns=..., host_cpus=... (the fit and --bands use it)."""
        steps, locks, rcu, kw = dict(self.steps), dict(self.locks), dict(self.rcu.__dict__), {}
        for k, v in changes.items():
            kind, _, name = k.partition("__")
            if kind == "step":
                steps[name] = replace(steps[name], ns=float(v))
            elif kind == "lock":
                locks[name] = replace(locks[name], handoff_ns=float(v))
            elif kind == "wake":
                locks[name] = replace(locks[name], wake_ns=float(v))
            elif kind == "rcu":
                rcu[name] = v
            else:
                kw[k] = v
        d = dict(self.__dict__, steps=steps, locks=locks, rcu=Rcu(**rcu), **kw)
        return Preset(**d)


def bundled_path(name: str):
    return resources.files("gictools.latency") / "presets" / f"{name}.toml"


def load_preset(name: str | None = None, path=None, host=None) -> Preset:
    """A bundled preset by name, or a preset file (TOML), priced on a host profile (a
    gictools.latency.hosts name or Host; default lpi-2024a). Raises ConfigError."""
    if path is not None:
        src = str(Path(path))
        data = read_toml(path)
    elif name is not None:
        if name not in BUNDLED:
            raise ConfigError(
                f"unknown latency preset {name!r} (known: {', '.join(BUNDLED)}; "
                "or give --preset-file)"
            )
        src = f"bundled:{name}"
        data = parse_toml(bundled_path(name).read_text(encoding="utf-8"), src)
    else:
        raise ConfigError("no latency preset given (--preset NAME or --preset-file FILE)")
    preset = parse_preset(data, src, host)
    if path is None and preset.name != name:
        raise ConfigError(f"bundled preset {name!r} names itself {preset.name!r}")
    return preset


def _num(where, v, *, lo=0.0, hi=float("inf")):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {v!r}")
    if v < lo or v != v:
        raise ConfigError(f"{where}: {v} is below {lo}")
    if v == float("inf"):
        raise ConfigError(f"{where}: {v} is not finite")
    if v > hi:
        raise ConfigError(f"{where}: {v:g} is above the maximum {hi:g}")
    return float(v)


def _str(where, v):
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{where}: expected a non-empty string, got {v!r}")
    return v


def _known(where, d, allowed):
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a table, got {type(d).__name__}")
    extra = set(d) - set(allowed)
    if extra:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(extra))} (allowed: {', '.join(allowed)})"
        )


TOP_KEYS = (
    "name",
    "kernel",
    "cache",
    "description",
    "host_cpus",
    "jitter",
    "walk",
    "rcu",
    "locks",
    "steps",
    "paths",
)


def parse_preset(data: dict, src: str = "<preset>", host=None) -> Preset:
    """Validate a decoded preset table (every error names the key) and price it on the
    host profile (gictools.latency.hosts.apply_host; default lpi-2024a)."""
    from gictools.latency.hosts import apply_host, parse_host

    priced_on = data.get("host") if isinstance(data, dict) else None
    if priced_on is None:
        return apply_host(_parse_preset(data, src), host)
    # an exported preset (as_dict: Parquet metadata, --json) is already priced on the host
    # it names: keep its numbers (core 1, atomics folded into ns) and its host's loop
    h = parse_host(priced_on, f"{src}: host")
    raw = _parse_preset({k: v for k, v in data.items() if k != "host"}, src)
    if host is not None:
        raise ConfigError(f"{src}: already priced on host {h.name!r}")
    return replace(apply_host(raw, h.with_(core=1.0)), host=h)


def _parse_preset(data: dict, src: str) -> Preset:
    _known(src, data, TOP_KEYS)
    for key in ("name", "cache", "steps", "paths"):  # no [locks]: nothing is serialized
        if key not in data:
            raise ConfigError(f"{src}: missing key {key!r}")
    name = _str(f"{src}: name", data["name"])
    cache = _str(f"{src}: cache", data["cache"])
    if cache not in policy_names():
        raise ConfigError(f"{src}: cache {cache!r} is not a policy ({', '.join(policy_names())})")
    moves = policy_class(cache).moves_on_hit  # the policy's fact, not the preset's
    walk = data.get("walk", {})
    _known(f"{src}: walk", walk, ("per_entry_ns", "remote_line_ns"))
    locks = _parse_locks(src, data.get("locks", {}))
    steps = _parse_steps(src, data["steps"], locks)
    paths = _parse_paths(src, data["paths"], steps)
    return Preset(
        name=name,
        cache=cache,
        kernel=str(data.get("kernel", "")),
        description=str(data.get("description", "")).strip(),
        host_cpus=_host_cpus(src, data.get("host_cpus", 128)),
        steps=steps,
        locks=locks,
        paths=paths,
        walk_per_entry_ns=_ns(f"{src}: walk.per_entry_ns", walk.get("per_entry_ns", 0)),
        walk_remote_line_ns=_host_ns(f"{src}: walk.remote_line_ns", walk.get("remote_line_ns", 0)),
        walk_moves_on_hit=moves,
        source=src,
        rcu=_parse_rcu(src, data.get("rcu", {})),
        jitter=_num(f"{src}: jitter", data.get("jitter", DEFAULT_JITTER), hi=MAX_JITTER),
    )


def _host_cpus(src, v):
    """A positive integer, or "unlimited" (no injector ever waits for a CPU)."""
    if v == "unlimited":
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1 << 20:
        raise ConfigError(
            f'{src}: host_cpus must be an integer from 1 to {1 << 20} or "unlimited", got {v!r}'
        )
    return v


def _host_ns(where, v):
    """A cost in ns, or "host": the host profile's (None until priced)."""
    return None if v == "host" else _ns(where, v)


def _ns(where, v):
    """A cost in ns: finite, from 0 to MAX_NS (so that sums of them stay far from int64)."""
    return _num(where, v, hi=MAX_NS)


def _parse_locks(src, table):
    locks = {}
    _known(f"{src}: locks", table, list(table) if isinstance(table, dict) else ())
    for lname, ld in table.items():
        w = f"{src}: locks.{lname}"
        _known(w, ld, ("scope", "kind", "handoff_ns", "wake_ns", "doc"))
        scope = ld.get("scope")
        if scope not in LOCK_SCOPES:
            raise ConfigError(f"{w}.scope: {scope!r} is not one of {', '.join(LOCK_SCOPES)}")
        kind = ld.get("kind", "spinlock")
        if kind not in LOCK_KINDS:
            raise ConfigError(f"{w}.kind: {kind!r} is not one of {', '.join(LOCK_KINDS)}")
        if "wake_ns" in ld and kind != "mutex":
            raise ConfigError(f"{w}.wake_ns: only a mutex has sleeping waiters")
        locks[lname] = Lock(
            lname,
            scope,
            _host_ns(f"{w}.handoff_ns", ld.get("handoff_ns", 0)),
            str(ld.get("doc", "")),
            kind,
            _ns(f"{w}.wake_ns", ld.get("wake_ns", 10_000.0)),
        )
    return locks


def _parse_rcu(src, rcu):
    _known(f"{src}: rcu", rcu, ("hz", "expedited", "extra_ticks", "expedited_ns"))
    hz = rcu.get("hz", 250)
    if isinstance(hz, bool) or not isinstance(hz, int) or not 1 <= hz <= 10_000:
        raise ConfigError(f"{src}: rcu.hz must be an integer in 1..10000, got {hz!r}")
    if not isinstance(rcu.get("expedited", False), bool):
        raise ConfigError(f"{src}: rcu.expedited must be true or false")
    return Rcu(
        hz,
        rcu.get("expedited", False),
        _num(f"{src}: rcu.extra_ticks", rcu.get("extra_ticks", 1.0), hi=MAX_EXTRA_TICKS),
        _ns(f"{src}: rcu.expedited_ns", rcu.get("expedited_ns", 50_000.0)),
    )


def _step_locks(w, sd, locks):
    lk = sd.get("lock", [])
    lk = [lk] if isinstance(lk, str) else lk
    if not isinstance(lk, list):
        raise ConfigError(f"{w}.lock: a lock name or a list of names, outer first")
    for x in lk:
        if x not in locks:
            raise ConfigError(
                f"{w}.lock: {x!r} is not a lock of this preset "
                f"({', '.join(locks) or 'none defined'})"
            )
    if len(set(lk)) != len(lk):
        raise ConfigError(f"{w}.lock: a lock listed twice")
    return lk


def _parse_steps(src, table, locks):
    steps = {}
    _known(f"{src}: steps", table, list(table) if isinstance(table, dict) else ())
    for sname, sd in table.items():
        w = f"{src}: steps.{sname}"
        _known(
            w,
            sd,
            ("ns", "lock", "walk", "action", "sleeps", "grace_period", "atomics", "flush", "doc"),
        )
        if "ns" not in sd and not sd.get("grace_period"):
            raise ConfigError(f"{w}: missing 'ns'")
        lk = _step_locks(w, sd, locks)
        action = sd.get("action")
        if action is not None and action not in ACTIONS:
            raise ConfigError(f"{w}.action: {action!r} is not one of {', '.join(ACTIONS)}")
        atomics = sd.get("atomics", 0)
        if isinstance(atomics, bool) or not isinstance(atomics, int) or not 0 <= atomics <= 64:
            raise ConfigError(f"{w}.atomics: an integer from 0 to 64, got {atomics!r}")
        for flag in ("walk", "sleeps", "grace_period", "flush"):
            if not isinstance(sd.get(flag, False), bool):
                raise ConfigError(f"{w}.{flag}: true or false")
        if sd.get("grace_period") and not sd.get("sleeps"):
            raise ConfigError(f"{w}: a grace_period step sleeps (sleeps = true)")
        if sd.get("sleeps") and lk and any(locks[x].kind != "mutex" for x in lk):
            # sleeping in atomic context is a bug: only mutexes may be held
            raise ConfigError(f"{w}: a sleeping step can only hold locks of kind 'mutex'")
        steps[sname] = Step(
            sname,
            _ns(f"{w}.ns", sd.get("ns", 0)),
            tuple(lk),
            sd.get("walk", False),
            action,
            sd.get("sleeps", False),
            str(sd.get("doc", "")),
            sd.get("grace_period", False),
            atomics,
            sd.get("flush", False),
        )
    return steps


def _parse_paths(src, table, steps):
    paths = {}
    _known(f"{src}: paths", table, OUTCOMES)
    for outcome, seq in table.items():
        w = f"{src}: paths.{outcome}"
        if not isinstance(seq, list) or not seq:
            raise ConfigError(f"{w}: a non-empty list of step names")
        for s in seq:
            if s not in steps:
                raise ConfigError(f"{w}: unknown step {s!r}")
        paths[outcome] = tuple(seq)
    for need in ("hit", "miss"):
        if need not in paths:
            raise ConfigError(f"{src}: paths.{need} is required")
    _check_prefixes(src, paths, steps)
    return paths


def _action_index(path, steps, action):
    for i, s in enumerate(path):
        if steps[s].action == action:
            return i
    return None


def _check_prefixes(src, paths, steps):
    """The closed loop decides the path as it goes: hit vs miss at the lookup step, the
    miss kind at the fill step. So paths must agree up to those steps."""
    li = _action_index(paths["hit"], steps, "lookup")
    if li is None:
        raise ConfigError(f'{src}: paths.hit has no step with action = "lookup"')
    for o in ("miss", "evict", "recycle", "nofill"):
        if o in paths and paths[o][: li + 1] != paths["hit"][: li + 1]:
            raise ConfigError(
                f"{src}: paths.{o} must start like paths.hit up to its lookup "
                f"step ({', '.join(paths['hit'][: li + 1])})"
            )
    fi = _action_index(paths["miss"], steps, "fill")
    if fi is None:
        raise ConfigError(f'{src}: paths.miss has no step with action = "fill"')
    for o in ("evict", "recycle"):
        if o in paths and paths[o][: fi + 1] != paths["miss"][: fi + 1]:
            raise ConfigError(
                f"{src}: paths.{o} must start like paths.miss up to its fill "
                f"step ({', '.join(paths['miss'][: fi + 1])})"
            )
    if "nofill" in paths and paths["nofill"][: li + 1] != paths["miss"][: li + 1]:
        raise ConfigError(f"{src}: paths.nofill must start like paths.miss")

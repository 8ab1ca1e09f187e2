"""Latency presets: a kernel's MSI injection path as data (TOML), loaded and validated.

A preset pairs a translation-cache policy with the steps its kernel takes to
inject one MSI, what each step costs (ns) and which serialized sections (locks)
it holds. The bundled presets live in gictools/latency/presets/*.toml; a user
copies one, edits it and passes it with --preset-file. The file format is
documented in the bundled files themselves and in docs/latency-model.md.
"""

import tomllib
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from gictools.errors import ConfigError
from gictools.model.cache import Outcome, policy_class, policy_names

BUNDLED = ("v6.8-rc1", "series-v2", "v6.10")
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
    host_cpus: int  # default host CPU count for the contention model
    steps: dict  # name -> Step
    locks: dict  # name -> Lock
    paths: dict  # outcome name -> tuple of step names
    walk_per_entry_ns: float  # list walk: each entry passed
    walk_remote_line_ns: float  # list walk: each entry passed that another CPU modified
    walk_moves_on_hit: bool  # the cache policy's moves_on_hit (LRU: a hit dirties the head)
    source: str = ""  # file it came from
    rcu: Rcu = Rcu()

    def as_dict(self):
        """JSON-able parameters (Parquet metadata, --json output)."""
        return {
            "name": self.name,
            "cache": self.cache,
            "kernel": self.kernel,
            "host_cpus": self.host_cpus,
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


def load_preset(name: str | None = None, path=None) -> Preset:
    """A bundled preset by name, or a preset file (TOML). Raises ConfigError with the reason."""
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"preset file {p}: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"preset file {p}: not UTF-8 text (byte {e.start})") from None
        src = str(p)
    elif name is not None:
        if name not in BUNDLED:
            raise ConfigError(
                f"unknown latency preset {name!r} (known: {', '.join(BUNDLED)}; "
                "or give --preset-file)"
            )
        text = bundled_path(name).read_text(encoding="utf-8")
        src = f"bundled:{name}"
    else:
        raise ConfigError("no latency preset given (--preset NAME or --preset-file FILE)")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"preset {src}: not valid TOML: {e}") from None
    except RecursionError:  # tomllib recurses per nested array/table
        raise ConfigError(f"preset {src}: nested too deeply") from None
    preset = parse_preset(data, src)
    if path is None and preset.name != name:
        raise ConfigError(f"bundled preset {name!r} names itself {preset.name!r}")
    return preset


def _num(where, v, *, lo=0.0):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {v!r}")
    if v < lo or v != v:
        raise ConfigError(f"{where}: {v} is below {lo}")
    if v == float("inf"):
        raise ConfigError(f"{where}: {v} is not finite")
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


def parse_preset(data: dict, src: str = "<preset>") -> Preset:
    """Validate a decoded preset table; every error names the key."""
    _known(
        src,
        data,
        (
            "name",
            "kernel",
            "cache",
            "description",
            "host_cpus",
            "walk",
            "rcu",
            "locks",
            "steps",
            "paths",
        ),
    )
    for key in ("name", "cache", "locks", "steps", "paths"):
        if key not in data:
            raise ConfigError(f"{src}: missing key {key!r}")
    name = _str(f"{src}: name", data["name"])
    cache = _str(f"{src}: cache", data["cache"])
    if cache not in policy_names():
        raise ConfigError(f"{src}: cache {cache!r} is not a policy ({', '.join(policy_names())})")
    moves = policy_class(cache).moves_on_hit  # the policy's fact, not the preset's
    host_cpus = data.get("host_cpus", 128)
    if isinstance(host_cpus, bool) or not isinstance(host_cpus, int) or host_cpus < 1:
        raise ConfigError(f"{src}: host_cpus must be a positive integer, got {host_cpus!r}")
    walk = data.get("walk", {})
    _known(f"{src}: walk", walk, ("per_entry_ns", "remote_line_ns"))

    locks = {}
    _known(f"{src}: locks", data["locks"], list(data["locks"]))
    for lname, ld in data["locks"].items():
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
            _num(f"{w}.handoff_ns", ld.get("handoff_ns", 0)),
            str(ld.get("doc", "")),
            kind,
            _num(f"{w}.wake_ns", ld.get("wake_ns", 10_000.0)),
        )

    rcu = data.get("rcu", {})
    _known(f"{src}: rcu", rcu, ("hz", "expedited", "extra_ticks", "expedited_ns"))
    hz = rcu.get("hz", 250)
    if isinstance(hz, bool) or not isinstance(hz, int) or not 1 <= hz <= 10_000:
        raise ConfigError(f"{src}: rcu.hz must be an integer in 1..10000, got {hz!r}")
    if not isinstance(rcu.get("expedited", False), bool):
        raise ConfigError(f"{src}: rcu.expedited must be true or false")
    rcu = Rcu(
        hz,
        rcu.get("expedited", False),
        _num(f"{src}: rcu.extra_ticks", rcu.get("extra_ticks", 1.0)),
        _num(f"{src}: rcu.expedited_ns", rcu.get("expedited_ns", 50_000.0)),
    )

    steps = {}
    for sname, sd in data["steps"].items():
        w = f"{src}: steps.{sname}"
        _known(w, sd, ("ns", "lock", "walk", "action", "sleeps", "grace_period", "doc"))
        if "ns" not in sd and not sd.get("grace_period"):
            raise ConfigError(f"{w}: missing 'ns'")
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
        action = sd.get("action")
        if action is not None and action not in ACTIONS:
            raise ConfigError(f"{w}.action: {action!r} is not one of {', '.join(ACTIONS)}")
        for flag in ("walk", "sleeps", "grace_period"):
            if not isinstance(sd.get(flag, False), bool):
                raise ConfigError(f"{w}.{flag}: true or false")
        if sd.get("grace_period") and not sd.get("sleeps"):
            raise ConfigError(f"{w}: a grace_period step sleeps (sleeps = true)")
        if sd.get("sleeps") and lk and any(locks[x].kind != "mutex" for x in lk):
            # sleeping in atomic context is a bug: only mutexes may be held
            raise ConfigError(f"{w}: a sleeping step can only hold locks of kind 'mutex'")
        steps[sname] = Step(
            sname,
            _num(f"{w}.ns", sd.get("ns", 0)),
            tuple(lk),
            sd.get("walk", False),
            action,
            sd.get("sleeps", False),
            str(sd.get("doc", "")),
            sd.get("grace_period", False),
        )

    paths = {}
    _known(f"{src}: paths", data["paths"], OUTCOMES)
    for outcome, seq in data["paths"].items():
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
    return Preset(
        name=name,
        cache=cache,
        kernel=str(data.get("kernel", "")),
        description=str(data.get("description", "")).strip(),
        host_cpus=host_cpus,
        steps=steps,
        locks=locks,
        paths=paths,
        walk_per_entry_ns=_num(f"{src}: walk.per_entry_ns", walk.get("per_entry_ns", 0)),
        walk_remote_line_ns=_num(f"{src}: walk.remote_line_ns", walk.get("remote_line_ns", 0)),
        walk_moves_on_hit=moves,
        source=src,
        rcu=rcu,
    )


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

"""A sweep's grid: the axes a user gives, expanded into independent cells.

A replay cell is (trace, cache policy, kernel, latency preset); a predict cell is
(lpi-stress -v/-d/-e/-i/--routing, preset). Each cell lands in its own hive partition
`policy=/kernel=/preset=/trace=` whose values are computed here, before anything runs,
so that a re-run can tell which cells are already finished.
"""

import glob
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from gictools import __version__
from gictools.analysis.predict import check_workload
from gictools.errors import ConfigError, GictoolsError
from gictools.files import file_sha256, read_toml
from gictools.latency.presets import DEFAULT_PRESET, Preset, load_preset
from gictools.model.cache import policy_class
from gictools.model.kernel import profile

PARTITION_KEYS = ("policy", "kernel", "preset", "trace")
NO_PRESET = DEFAULT_PRESET  # the default axis: no contention, fixed cost per outcome
DEFAULT = "default"  # policy / kernel: what the trace's header (or the model) picks
PREDICT_KERNEL = "preset"  # predict cells: the kernel the preset describes
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


MAX_VALUE = 100  # keeps "trace=<value>" well inside a 255-byte file name
MAX_CELLS = 100_000


def partition_value(text: str) -> str:
    """A directory-safe hive value: no '/', '=', spaces; never starting with '.' or '_'
    (pyarrow.dataset skips such names); long names shortened, with a hash to stay apart."""
    v = _UNSAFE.sub("_", str(text)) or "_empty"
    v = "x" + v if v[0] in "._" else v
    if len(v) > MAX_VALUE:
        v = v[: MAX_VALUE - 9] + "-" + hashlib.sha256(str(text).encode()).hexdigest()[:8]
    return v


def _check_size(where, *axes):
    n = 1
    for a in axes:
        n *= len(a)
    if n > MAX_CELLS:
        raise ConfigError(f"{where}: the grid has {n:,} cells (at most {MAX_CELLS:,})")


def preset_sha256(preset: Preset | None) -> str | None:
    if preset is None:
        return None
    return hashlib.sha256(json.dumps(preset.as_dict(), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Cell:
    """One independent unit of work; picklable, self-contained (the preset travels with it,
    the trace is read by path on the worker)."""

    kind: str  # "replay" | "predict"
    policy: str  # partition values
    kernel: str
    preset: str
    trace: str
    trace_path: str | None = None  # replay: absolute path as workers see it
    trace_sha256: str | None = None  # as hashed when the grid was planned
    cache: str | None = None  # replay: the policy to pass (None = the trace's default)
    kernel_version: str | None = None  # replay: --kernel (None = the trace's)
    preset_obj: Preset | None = field(default=None, compare=False)
    host_cpus: int | None = None
    workload: tuple | None = None  # predict: (v, d, e, i, routing)
    gictools_version: str = __version__  # the driver's; a worker must run the same

    @property
    def partition(self) -> str:
        return "/".join(f"{k}={getattr(self, k)}" for k in PARTITION_KEYS)

    @property
    def cell_id(self) -> str:
        return hashlib.sha256(self.partition.encode()).hexdigest()[:20]

    def identity(self) -> dict:
        """What must match a manifest entry for the cell to count as finished."""
        return {
            "kind": self.kind,
            "partition": self.partition,
            "trace_sha256": self.trace_sha256,
            "cache": self.cache,
            "kernel_version": self.kernel_version,
            "preset_sha256": preset_sha256(self.preset_obj),
            "host_cpus": self.host_cpus,
            "workload": list(self.workload) if self.workload else None,
            "gictools_version": self.gictools_version,
        }


def _presets(names, files=()):
    """[(partition value, Preset)]."""
    out = []
    for n in names:
        if n.endswith(".toml"):
            p = load_preset(path=n)
            out.append((partition_value(p.name), p))
        else:
            out.append((n, load_preset(n)))
    for f in files:
        p = load_preset(path=f)
        out.append((partition_value(p.name), p))
    return out


def _check_url(pattern):
    if "://" in str(pattern):
        raise ConfigError(
            f"trace {pattern!r}: URLs are not supported; workers read traces by path "
            "(a filesystem every worker mounts at the same path, docs/sweep.md)"
        )


def expand_traces(patterns, base=None) -> list[Path]:
    """Glob patterns (relative to base) -> sorted unique absolute paths; each must match."""
    found: list[Path] = []
    for pat in patterns:
        _check_url(pat)
        p = os.path.expanduser(str(pat))
        if base is not None and not os.path.isabs(p):
            p = os.path.join(base, p)
        hits = sorted(glob.glob(p, recursive=True)) if glob.has_magic(p) else [p]
        hits = [h for h in hits if os.path.isfile(h)]
        if not hits:
            raise ConfigError(f"--trace {pat!r} matches no file")
        found.extend(Path(h).resolve() for h in hits)
    return sorted(dict.fromkeys(found))


def _trace_names(paths, shas):
    """Partition value per trace: its file stem; stems shared by different files get the
    first 8 hex digits of their SHA-256 appended."""
    stems = [partition_value(p.stem) for p in paths]
    dup = {s for s in stems if stems.count(s) > 1}
    return [f"{s}-{h[:8]}" if s in dup else s for s, h in zip(stems, shas)]


def replay_cells(traces, caches=(), kernels=(), presets=(), preset_files=(), host_cpus=None):
    """The product traces x policies x kernels x presets, as cells."""
    for c in caches:
        if c != DEFAULT:
            policy_class(c)
    kvals = []
    for k in kernels or [DEFAULT]:
        kvals.append((DEFAULT, None) if k == DEFAULT else ("v" + profile(k).name, k))
    pvals = _presets(presets or ([] if preset_files else [NO_PRESET]), preset_files)
    _check_size("replay", traces, caches or [DEFAULT], kvals, pvals)
    shas = []
    for t in traces:
        try:
            shas.append(file_sha256(t))
        except OSError as e:
            raise ConfigError(f"{t}: cannot read: {e.strerror}") from None
    names = _trace_names(traces, shas)
    cells = []
    for (t, sha, name), c, (kv, k), (pv, p) in itertools.product(
        zip(traces, shas, names), caches or [DEFAULT], kvals, pvals
    ):
        cells.append(
            Cell(
                kind="replay",
                policy=c,
                kernel=kv,
                preset=pv,
                trace=name,
                trace_path=str(t),
                trace_sha256=sha,
                cache=None if c == DEFAULT else c,
                kernel_version=k,
                preset_obj=p,
                host_cpus=host_cpus,
            )
        )
    return cells


def int_range(where, spec) -> list[int]:
    """An lpi-stress flag's values: an int, a list of ints, or a table
    {start, stop[, step | mul]} (stop inclusive; mul: geometric)."""
    if isinstance(spec, bool):
        raise ConfigError(f"{where}: expected an integer, a list or a range table")
    if isinstance(spec, int):
        vals = [spec]
    elif isinstance(spec, list):
        vals = spec
    elif isinstance(spec, dict):
        unknown = set(spec) - {"start", "stop", "step", "mul"}
        if (
            unknown
            or "start" not in spec
            or "stop" not in spec
            or ("step" in spec and "mul" in spec)
        ):
            raise ConfigError(f"{where}: a range is {{start, stop, step or mul}}, got {spec!r}")
        start, stop = spec["start"], spec["stop"]
        step, mul = spec.get("step", 1 if "mul" not in spec else None), spec.get("mul")
        for k, v in (("start", start), ("stop", stop), ("step", step), ("mul", mul)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigError(f"{where}.{k}: must be an integer >= 1, got {v!r}")
        if mul is not None and mul < 2:
            raise ConfigError(f"{where}.mul: must be >= 2")
        vals, x = [], start
        while x <= stop and len(vals) <= 10_000:
            vals.append(x)
            x = x * mul if mul else x + step
    else:
        raise ConfigError(f"{where}: expected an integer, a list or a range table, got {spec!r}")
    if not vals or len(vals) > 10_000:
        raise ConfigError(f"{where}: between 1 and 10000 values, got {len(vals)}")
    for v in vals:
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{where}: values must be integers >= 1, got {v!r}")
    return list(dict.fromkeys(vals))


def predict_cells(spec: dict, where="predict", host_cpus=None):
    """lpi-stress flag ranges x routings x presets, as cells."""
    allowed = {"v", "d", "e", "i", "routing", "preset", "preset_file", "host_cpus"}
    unknown = set(spec) - allowed
    if unknown:
        raise ConfigError(f"[{where}]: unknown key(s) {sorted(unknown)} (known: {sorted(allowed)})")
    axes = [
        int_range(f"{where}.{k}", spec.get(k, dflt)) for k, dflt in zip("vdei", (1, 1, 16, 1000))
    ]
    routings = _strs(f"{where}.routing", spec.get("routing", ["as-measured"]))
    for r in routings:
        if r not in ("as-measured", "fixed"):
            raise ConfigError(f"{where}.routing: {r!r} is not as-measured or fixed")
    names = _strs(f"{where}.preset", spec.get("preset", []))
    files = _strs(f"{where}.preset_file", spec.get("preset_file", []))
    pvals = _presets(names, files)
    if not pvals:
        raise ConfigError(f"[{where}]: give at least one preset")
    hc = spec.get("host_cpus", host_cpus)
    if hc is not None and (not isinstance(hc, int) or isinstance(hc, bool) or hc < 1):
        raise ConfigError(f"{where}.host_cpus: must be an integer >= 1, got {hc!r}")
    _check_size(where, *axes, routings, pvals)
    check_workload(max(axes[0]), max(axes[1]), max(axes[2]), max(axes[3]))
    cells = []
    for v, d, e, i, r, (pv, p) in itertools.product(*axes, routings, pvals):
        name = f"lpi-stress-v{v}-d{d}-e{e}-i{i}" + ("-fixed" if r == "fixed" else "")
        cells.append(
            Cell(
                kind="predict",
                policy=partition_value(p.cache),
                kernel=PREDICT_KERNEL,
                preset=pv,
                trace=name,
                preset_obj=p,
                host_cpus=hc,
                workload=(v, d, e, i, r),
            )
        )
    return cells


def _strs(where, v):
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ConfigError(f"{where}: expected a string or a list of strings, got {v!r}")
    return v


def check_unique(cells):
    """Two cells may not share a partition (e.g. a preset file named like a bundled one)."""
    seen = {}
    for c in cells:
        if c.partition in seen and seen[c.partition] != c:
            raise ConfigError(f"two grid cells map to the same partition {c.partition}")
        seen[c.partition] = c
    return list(dict.fromkeys(cells))


def cells_from_args(
    traces, caches=(), kernels=(), presets=(), preset_files=(), host_cpus=None
) -> list[Cell]:
    """The command-line grid: --trace globs x --cache x --kernel x --preset."""
    if not traces:
        raise ConfigError("give at least one --trace (or a --grid file)")
    return check_unique(
        replay_cells(expand_traces(traces), caches, kernels, presets, preset_files, host_cpus)
    )


def cells_from_toml(path, host_cpus=None) -> list[Cell]:
    """A grid file: a [replay] table (trace, cache, kernel, preset, preset_file, host_cpus)
    and/or a [predict] table (v, d, e, i, routing, preset, preset_file, host_cpus); relative
    paths are relative to the file. docs/sweep.md has an example."""
    path = Path(path)
    data = read_toml(path)
    unknown = set(data) - {"replay", "predict"}
    if unknown or not data:
        raise ConfigError(
            f"{path}: a grid has [replay] and/or [predict] tables, got {sorted(data)}"
        )
    base = path.resolve().parent
    cells = []
    try:
        for key in ("replay", "predict"):
            spec = data.get(key)
            if spec is None:
                continue
            if not isinstance(spec, dict):
                raise ConfigError(f"[{key}] must be a table")
            spec = dict(spec)
            if "preset_file" in spec:
                spec["preset_file"] = [
                    str(base / f) for f in _strs(f"{key}.preset_file", spec["preset_file"])
                ]
            if key == "predict":
                cells += predict_cells(spec, host_cpus=host_cpus)
                continue
            allowed = {"trace", "cache", "kernel", "preset", "preset_file", "host_cpus"}
            if set(spec) - allowed:
                raise ConfigError(
                    f"[replay]: unknown key(s) {sorted(set(spec) - allowed)} (known: {sorted(allowed)})"
                )
            hc = spec.get("host_cpus", host_cpus)
            if hc is not None and (not isinstance(hc, int) or isinstance(hc, bool) or hc < 1):
                raise ConfigError(f"replay.host_cpus: must be an integer >= 1, got {hc!r}")
            traces = expand_traces(_strs("replay.trace", spec.get("trace", [])), base)
            if not traces:
                raise ConfigError("[replay]: give at least one trace")
            cells += replay_cells(
                traces,
                _strs("replay.cache", spec.get("cache", [])),
                _strs("replay.kernel", spec.get("kernel", [])),
                _strs("replay.preset", spec.get("preset", [])),
                spec.get("preset_file", []),
                hc,
            )
    except GictoolsError as e:
        raise ConfigError(f"{path}: {e}") from None
    return check_unique(cells)

"""Human-readable text for replay summaries and trace listings (kept out of the CLI and model)."""

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from gictools import regs as R
from gictools.cmdlayout import decode_command
from gictools.trace import format as F


def _fmt(v, pct=False):
    if v is None:
        return "-"
    if pct:
        return f"{100 * v:.2f}%"
    return f"{v:,}" if isinstance(v, int) else str(v)


def render_table(head: list, body: list, *, fancy: bool | None = None) -> str:
    """A table as text: a rich table with box and colours on a terminal, plain aligned
    columns when piped (first column left-aligned, the others right-aligned)."""
    import io

    from rich import box
    from rich.console import Console
    from rich.table import Table

    if fancy is None:
        fancy = sys.stdout.isatty()
    t = Table(
        box=box.SIMPLE_HEAD if fancy else None,
        show_edge=False,
        pad_edge=False,
        header_style="bold" if fancy else None,
    )
    for i, h in enumerate(head):
        t.add_column(str(h), justify="left" if i == 0 else "right", no_wrap=True)
    for row in body:
        t.add_row(*[str(x) for x in row])
    buf = io.StringIO()
    Console(
        file=buf, width=1 << 12, force_terminal=fancy, color_system="auto" if fancy else None
    ).print(t)
    return "\n".join(line.rstrip() for line in buf.getvalue().rstrip("\n").splitlines())


def summary_table(reports, *, fancy: bool | None = None) -> str:
    """Policies side by side: events, MSIs, commands, errors, cache outcomes, latency."""
    rows: list[tuple[str, Callable[[Any], str]]] = [
        ("events", lambda r: _fmt(r.events)),
        ("MSIs", lambda r: _fmt(r.msis)),
        ("  delivered (ret 1)", lambda r: _fmt(r.delivered)),
        ("commands", lambda r: _fmt(r.commands)),
        ("cache lookups", lambda r: _fmt(r.lookups)),
        ("  hits", lambda r: _fmt(r.hits)),
        ("  misses", lambda r: _fmt(r.misses)),
        ("  evictions", lambda r: _fmt(r.evictions)),
        ("  hit rate", lambda r: _fmt(r.hit_rate, pct=True)),
        ("latency p50 ns", lambda r: _fmt(r.percentile(0.5))),
        ("latency p99 ns", lambda r: _fmt(r.percentile(0.99))),
        ("latency max ns", lambda r: _fmt(max(r.latency) if r.latency else None)),
        ("failed expectations", lambda r: _fmt(r.failure_count)),
    ]
    codes = sorted({c for r in reports for c in r.msi_errors})
    for c in codes:
        rows.append((f"MSI {R.error_name(c)}", lambda r, c=c: _fmt(r.msi_errors.get(c, 0))))  # type: ignore[misc]
    codes = sorted({c for r in reports for c in r.command_errors})
    for c in codes:
        rows.append((f"cmd {R.error_name(c)}", lambda r, c=c: _fmt(r.command_errors.get(c, 0))))  # type: ignore[misc]
    head = ["policy"] + [r.policy for r in reports]
    body = [[name] + [f(r) for r in reports] for name, f in rows]
    return render_table(head, body, fancy=fancy)


def describe_record(rec) -> str:
    """One line per record, commands disassembled."""
    tag = rec[0]
    name = F.TAG_NAMES.get(tag, str(tag))
    if tag == F.MSI_BLOCK:
        _, n, its, ts, dev, ev, inj = rec
        return (
            f"{name:<9} its={its} n={n} t={int(ts[0])}..{int(ts[-1])} "
            f"dev={int(dev.min())}..{int(dev.max())} ev={int(ev.min())}..{int(ev.max())}"
        )
    t, inj = rec[1], rec[2]
    pre = f"{name:<9} t={t}" + (f" inj={inj}" if inj is not None else "")
    if tag == F.MSI:
        return f"{pre} its={rec[3]} DeviceID={rec[4]:#x} EventID={rec[5]:#x}"
    if tag == F.COMMAND:
        mnem, fields = decode_command(rec[4])
        args = " ".join(f"{k}={v:#x}" for k, v in fields.items())
        return f"{pre} its={rec[3]} {mnem} {args}  [{rec[4].hex()}]"
    if tag == F.REG:
        _, _, _, frame, index, off, size, value, is_write = rec
        v = "?" if value is None else f"{value:#x}"
        return f"{pre} {frame}[{index}] {'W' if is_write else 'R'} {off:#06x}/{size} = {v}"
    if tag == F.MEM:
        data = rec[4]
        shown = data[:16].hex() + ("..." if len(data) > 16 else "")
        return f"{pre} gpa={rec[3]:#x} len={len(data)} {shown}"
    if tag == F.CTRL:
        return f"{pre} {rec[3]} its={rec[4]} ret={rec[5]}"
    if tag == F.EXPECT:
        return f"{pre} {rec[3]} {rec[4]}"
    if tag == F.ACK:
        return f"{pre} vCPU {rec[3]} acks INTID {rec[4]}"
    return f"{pre} {rec[3:]}"


class TraceInfo:
    """Counts and spans gathered in one pass (gictools info)."""

    def __init__(self):
        self.counts = {}
        self.msis = 0
        self.t_first = self.t_last = None
        self.dev = [None, None]
        self.ev = [None, None]
        self.commands = {}

    def _span(self, span, lo, hi):
        span[0] = lo if span[0] is None else min(span[0], lo)
        span[1] = hi if span[1] is None else max(span[1], hi)

    def _time(self, lo, hi):
        self.t_first = lo if self.t_first is None else min(self.t_first, lo)
        self.t_last = hi if self.t_last is None else max(self.t_last, hi)

    def add(self, rec):
        tag = rec[0]
        name = F.TAG_NAMES.get(tag, str(tag))
        self.counts[name] = self.counts.get(name, 0) + 1
        if tag == F.MSI_BLOCK:
            _, n, _, ts, dev, ev, _ = rec
            self.msis += n
            self._span(self.dev, int(dev.min()), int(dev.max()))
            self._span(self.ev, int(ev.min()), int(ev.max()))
            self._time(int(np.min(ts)), int(np.max(ts)))
            return
        self._time(rec[1], rec[1])
        if tag == F.MSI:
            self.msis += 1
            self._span(self.dev, rec[4], rec[4])
            self._span(self.ev, rec[5], rec[5])
        elif tag == F.COMMAND:
            mnem, _ = decode_command(rec[4])
            self.commands[mnem] = self.commands.get(mnem, 0) + 1

    def as_dict(self, name: str, header: dict) -> dict:
        """The `info --json` object of one trace (docs/cli-json.md)."""
        vm = header["vm"]
        return {
            "trace": name,
            "format": header["format"],
            "version": list(header["version"]),
            "source": header.get("source", ""),
            "vm": {
                "vcpus": vm["vcpus"],
                "kernel": vm.get("kernel"),
                "itses": [i["base"] for i in vm.get("itses", [])],
            },
            "metadata": header.get("metadata", {}),
            "records": dict(self.counts),
            "msis": self.msis,
            "commands": dict(sorted(self.commands.items())),
            "device_ids": None if self.dev[0] is None else list(self.dev),
            "event_ids": None if self.ev[0] is None else list(self.ev),
            "t_first_ns": self.t_first,
            "t_last_ns": self.t_last,
        }


def _short_json(v, limit=200) -> str:
    import json

    s = json.dumps(v, default=str)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def info_text(inf: TraceInfo, name: str, header: dict) -> str:
    """`gictools info`'s text for one trace."""
    vm = header["vm"]
    out = [
        f"trace      {name}",
        f"format     {header['format']} {header['version'][0]}.{header['version'][1]}",
        f"source     {header.get('source', '')}",
        f"vm         {vm['vcpus']} vCPUs, kernel {vm.get('kernel') or '-'}, "
        f"{len(vm.get('itses', []))} ITS at "
        + ", ".join(f"{i['base']:#x}" for i in vm.get("itses", [])),
        f"metadata   {_short_json(header.get('metadata', {}))}",
        "records    " + ", ".join(f"{k} {v:,}" for k, v in inf.counts.items()),
        f"MSIs       {inf.msis:,}",
        "commands   " + (", ".join(f"{k} {v}" for k, v in sorted(inf.commands.items())) or "-"),
    ]
    if inf.dev[0] is not None:
        out.append(
            f"DeviceIDs  {inf.dev[0]:#x}..{inf.dev[1]:#x}   EventIDs {inf.ev[0]:#x}..{inf.ev[1]:#x}"
        )
    if inf.t_first is not None:
        out.append(
            f"duration   {(inf.t_last - inf.t_first) / 1e9:.6f} s ({inf.t_first}..{inf.t_last} ns)"
        )
    return "\n".join(out)


# --- dump ---------------------------------------------------------------------------------
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def parse_time_ns(v: str) -> int:
    """'1500' (ns), '1.5us', '2ms', '0.1s' -> ns."""
    s = v.strip()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if s.endswith(unit) and s[: -len(unit)]:
            num, mult = s[: -len(unit)], _UNITS[unit]
            break
    else:
        num, mult = s, 1
    try:
        t = float(num) * mult if any(c in num for c in ".eE") else int(num, 0) * mult
    except ValueError:
        raise ValueError(f"{v!r} is not a time (ns, or a number with ns/us/ms/s)") from None
    if not 0 <= t <= F.T_MAX:
        raise ValueError(f"{v!r}: a time is in 0..2^63 ns")
    return int(t)


_KINDS = {n.lower(): t for t, n in F.TAG_NAMES.items() if t != F.MSI_BLOCK}


class DumpFilter:
    """Which records and MSIs `gictools dump` prints (None: no condition).
    ops are record kinds (msi, command, ...) or command mnemonics (MAPTI, ...)."""

    def __init__(
        self, devices=None, events=None, vcpus=None, itses=None, ops=None, t_from=None, t_to=None
    ):
        self.devices, self.events, self.vcpus, self.itses = devices, events, vcpus, itses
        self.t_from, self.t_to = t_from, t_to
        self.kinds = self.mnemonics = None
        if ops is not None:
            self.kinds = {_KINDS[o.lower()] for o in ops if o.lower() in _KINDS}
            self.mnemonics = {o.upper() for o in ops if o.lower() not in _KINDS}
        self.per_msi = (
            devices is not None or events is not None or t_from is not None or t_to is not None
        )

    def check(self):
        """Unknown mnemonics are a usage error (a typo would print nothing)."""
        known = set(R.COMMAND_NAMES.values())
        bad = sorted(m for m in self.mnemonics or () if m not in known)
        if bad:
            raise ValueError(
                f"--op {', '.join(bad)}: not a record kind ({', '.join(_KINDS)}) "
                f"or a command ({', '.join(sorted(known))})"
            )

    def _time_ok(self, t):
        return (self.t_from is None or t >= self.t_from) and (self.t_to is None or t <= self.t_to)

    def msi_mask(self, rec):
        """For an MSI_BLOCK: a boolean mask of the MSIs that pass (None: all pass)."""
        if not self.per_msi:
            return None
        _, n, _, ts, dev, ev, _ = rec
        m = np.ones(n, dtype=bool)
        if self.devices is not None:
            m &= np.isin(dev, list(self.devices))
        if self.events is not None:
            m &= np.isin(ev, list(self.events))
        if self.t_from is not None:
            m &= ts >= self.t_from
        if self.t_to is not None:
            m &= ts <= self.t_to
        return m

    def record_ok(self, rec) -> bool:
        """Record-level conditions (for MSI_BLOCKs: kind, ITS and vCPU only)."""
        tag = rec[0]
        if tag == F.MSI_BLOCK:
            if self.kinds is not None and F.MSI not in self.kinds:
                return False
            if self.itses is not None and rec[2] not in self.itses:
                return False
            return self.vcpus is None
        if not self._time_ok(rec[1]):
            return False
        mnem, fields = decode_command(rec[4]) if tag == F.COMMAND else (None, {})
        if self.kinds is not None or self.mnemonics:
            if tag not in (self.kinds or ()) and mnem not in (self.mnemonics or ()):
                return False
        if self.itses is not None:
            its = rec[3] if tag in (F.MSI, F.COMMAND) else rec[4] if tag == F.CTRL else None
            if tag == F.REG and rec[3] in ("its", "its-user"):
                its = rec[4]
            if its not in self.itses:
                return False
        if self.vcpus is not None:
            v = None
            if tag == F.ACK:
                v = rec[3]
            elif tag == F.REG and rec[3] == "redist":
                v = rec[4]
            elif tag == F.EXPECT:
                v = rec[4].get("vcpu")
            if v not in self.vcpus:
                return False
        if self.devices is not None:
            d = rec[4] if tag == F.MSI else fields.get("DeviceID")
            if d not in self.devices:
                return False
        if self.events is not None:
            e = rec[5] if tag == F.MSI else fields.get("EventID")
            if e not in self.events:
                return False
        return True


def _msi_line(t, inj, its, dev, ev):
    pre = f"{'MSI':<9} t={t}" + (f" inj={inj}" if inj is not None else "")
    return f"{pre} its={its} DeviceID={dev:#x} EventID={ev:#x}"


def _record_json(rec) -> dict:
    tag = rec[0]
    d: dict[str, Any] = {"type": F.TAG_NAMES[tag]}
    if tag == F.MSI_BLOCK:
        _, n, its, ts, dev, ev, inj = rec
        d.update(
            n=n,
            its=its,
            t_first_ns=int(ts[0]),
            t_last_ns=int(ts[-1]),
            device_ids=[int(dev.min()), int(dev.max())],
            event_ids=[int(ev.min()), int(ev.max())],
        )
        return d
    for name, v in zip(F.FIELDS[tag], rec[1:]):
        d[name] = v.hex() if isinstance(v, bytes) else v
    if tag == F.COMMAND:
        mnem, fields = decode_command(rec[4])
        d["command"] = mnem
        d["fields"] = fields
    return d


def dump_lines(rd, flt: DumpFilter, *, expand=False, as_json=False):
    """The lines of `gictools dump`, lazily: text, or (as_json) one dict per line for the
    CLI's JSON printer."""
    for rec in rd:
        if not flt.record_ok(rec):
            continue
        ri, off = rd.record_index, rd.offset
        if rec[0] == F.MSI_BLOCK:
            mask = flt.msi_mask(rec)
            if mask is not None and not mask.any():
                continue
            if expand:
                _, n, its, ts, dev, ev, inj = rec
                idx = range(n) if mask is None else np.flatnonzero(mask).tolist()
                tl, dl, el = ts.tolist(), dev.tolist(), ev.tolist()
                il = inj.tolist() if inj is not None else None
                for k in idx:
                    i = None if il is None else il[k]
                    if as_json:
                        yield (
                            {
                                "record": ri,
                                "byte_offset": off,
                                "index": k,
                                "type": "MSI",
                                "t_ns": tl[k],
                                "injector": i,
                                "its": its,
                                "device_id": dl[k],
                                "event_id": el[k],
                            }
                        )
                    else:
                        yield f"{ri:>8}.{k:<5} @{off:<10} {_msi_line(tl[k], i, its, dl[k], el[k])}"
                continue
            if mask is not None and not mask.all():
                extra = f" ({int(mask.sum())} of {rec[1]} match)"
            else:
                extra = ""
        else:
            extra = ""
        if as_json:
            yield {"record": ri, "byte_offset": off, **_record_json(rec)}
        else:
            yield f"{ri:>8} @{off:<10} {describe_record(rec)}{extra}"

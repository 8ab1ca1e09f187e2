"""Human-readable text for replay summaries and trace listings (kept out of the CLI and model)."""

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from gictools import regs as R
from gictools.cmdlayout import decode_command
from gictools.queuewatch import QueueWatch
from gictools.trace import format as F


def percent(v: float | None) -> str:
    """A rate as a percentage, with enough digits that a rate short of 100 % (or above
    0 %) never prints as 100.00 % (0.00 %): 272 misses in 10 M lookups is 99.9973%."""
    if v is None:
        return "-"
    for digits in range(2, 8):
        s = f"{100 * v:.{digits}f}"
        if not ((v < 1 and float(s) >= 100) or (v > 0 and float(s) <= 0)):
            break
    return s + "%"


def _fmt(v, pct=False):
    if v is None:
        return "-"
    if pct:
        return percent(v)
    return f"{v:,}" if isinstance(v, int) else str(v)


def render_table(
    head: list, body: list, *, left: int = 1, fancy: bool | None = None, gap: int = 2
) -> str:
    """The CLI's one table renderer: a header, a rule, then rows; the first `left` columns
    left-aligned, the others right-aligned (numbers), every line as wide as the table.
    On a terminal (fancy) the header is bold and the rule a line; piped, plain ASCII."""
    if fancy is None:
        fancy = sys.stdout.isatty()
    cells = [[str(x) for x in row] for row in [head, *body]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    sep = " " * gap

    def line(row: list[str]) -> str:
        return sep.join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
        )

    header = line(cells[0])
    rule = sep.join(("─" if fancy else "-") * w for w in widths)
    if fancy:
        header = f"\x1b[1m{header}\x1b[0m"
    return "\n".join([header, rule, *map(line, cells[1:])])


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


class Clock:
    """Timestamps as `trace-cmd report` prints them: sec.usec relative to the first record
    (absolute: since the trace's clock's zero, e.g. the epoch for a QEMU capture; nsec:
    sec.nsec). The first record's time is taken as it streams by (start)."""

    def __init__(self, absolute: bool = False, nsec: bool = False):
        self.absolute, self.nsec = absolute, nsec
        self.base: int | None = 0 if absolute else None

    def start(self, rec) -> None:
        if self.base is None:
            self.base = int(rec[3][0]) if rec[0] == F.MSI_BLOCK else rec[1]

    def text(self, t: int) -> str:
        d = t - (self.base or 0)
        sec, ns = divmod(abs(d), 1_000_000_000)
        frac = f"{ns:09d}" if self.nsec else f"{ns // 1000:06d}"
        return f"{'-' if d < 0 else ''}{sec}.{frac}"

    def offset(self, rel: int | None) -> int | None:
        """A --from/--to value (ns after the first record; absolute ns with absolute)."""
        return None if rel is None else rel + (self.base or 0)


_DECIMAL_ARGS = {"its", "size", "vcpu", "ret", "count", "n", "index"}


def _arg(k: str, v) -> str:
    """An EXPECT argument as text: IDs, INTIDs, addresses and values in hex, errors named."""
    if isinstance(v, bool) or v is None:
        return f"{k}={str(v).lower()}"
    if isinstance(v, int):
        if k == "error":
            return f"{k}={R.error_name(v)}"
        return f"{k}={v}" if k in _DECIMAL_ARGS else f"{k}={v:#x}"
    if isinstance(v, (bytes, bytearray)):
        return f"{k}={bytes(v).hex()}"
    return f"{k}={_short_json(v, 80)}"


def expect_text(kind: str, args) -> str:
    """An EXPECT record's kind and arguments, as `msi ret=1 intid=0x2002 vcpu=1`."""
    if not isinstance(args, dict):
        return f"{kind} {_short_json(args, 80)}"
    return " ".join([kind, *(_arg(str(k), v) for k, v in args.items())])


def describe_record(rec, clock: Clock | None = None) -> str:
    """One line per record as `trace-cmd report` does: time, kind, fields; commands
    disassembled, IDs and INTIDs in hex."""
    clock = clock or Clock(absolute=True)
    tag = rec[0]
    name = F.TAG_NAMES.get(tag, str(tag))
    if tag == F.MSI_BLOCK:
        _, n, its, ts, dev, ev, inj = rec
        if n == 1:  # an imported capture's MSIs: one per record
            i = None if inj is None else int(inj[0])
            return _msi_line(clock, int(ts[0]), i, its, int(dev[0]), int(ev[0]))
        return (
            f"{clock.text(int(ts[0])):>13}: {name:<9} its={its} n={n} "
            f"DeviceID={int(dev.min()):#x}..{int(dev.max()):#x} "
            f"EventID={int(ev.min()):#x}..{int(ev.max()):#x} until {clock.text(int(ts[-1]))}"
        )
    t, inj = rec[1], rec[2]
    pre = f"{clock.text(t):>13}: {name:<9}" + (f" inj={inj}" if inj is not None else "")
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
        ret = "" if rec[5] is None else f" ret={R.error_name(rec[5])}"  # None: not recorded
        return f"{pre} {rec[3]} its={rec[4]}{ret}"
    if tag == F.EXPECT:
        return f"{pre} {expect_text(rec[3], rec[4])}"
    if tag == F.ACK:
        return f"{pre} vCPU {rec[3]} acks INTID {rec[4]:#x}"
    return f"{pre} {rec[3:]}"


class TraceInfo:
    """Counts and spans gathered in one pass (gictools info)."""

    def __init__(self, header: dict | None = None):
        self.counts: dict[str, int] = {}
        self.queue = QueueWatch(header) if header is not None else None
        self.msis = 0
        self.t_first = self.t_last = None
        self.dev = [None, None]
        self.ev = [None, None]
        self.commands: dict[str, int] = {}

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
        for _its, raw, _err in self.queue.feed(rec) if self.queue is not None else ():
            mnem, _ = decode_command(raw)
            self.commands[mnem] = self.commands.get(mnem, 0) + 1
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
            "commands_from_queue": self.queue.total if self.queue is not None else None,
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
        f"records    {sum(inf.counts.values()):,}: "
        + ", ".join(f"{k} {v:,}" for k, v in inf.counts.items()),
        f"MSIs       {inf.msis:,}",
        "commands   " + (", ".join(f"{k} {v}" for k, v in sorted(inf.commands.items())) or "-"),
    ]
    q = inf.queue
    if q is not None and q.total:
        out[-1] += f" ({q.total:,} from the command queue)"
    if q is not None and q.broken:
        out.append(f"           (the command queue not followed past a record: {q.broken})")
    if inf.dev[0] is not None:
        out.append(
            f"DeviceIDs  {inf.dev[0]:#x}..{inf.dev[1]:#x}   EventIDs {inf.ev[0]:#x}..{inf.ev[1]:#x}"
        )
    if inf.t_first is not None:
        clock = Clock(absolute=True)
        out.append(
            f"duration   {(inf.t_last - inf.t_first) / 1e9:.6f} s "
            f"(first record at {clock.text(inf.t_first)} s on the trace's clock)"
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
        self.clock = Clock()  # what --from/--to count from, how times print (dump sets it)
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
        lo, hi = self.clock.offset(self.t_from), self.clock.offset(self.t_to)
        return (lo is None or t >= lo) and (hi is None or t <= hi)

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
            m &= ts >= self.clock.offset(self.t_from)
        if self.t_to is not None:
            m &= ts <= self.clock.offset(self.t_to)
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


def _msi_line(clock: Clock, t, inj, its, dev, ev):
    pre = f"{clock.text(t):>13}: {'MSI':<9}" + (f" inj={inj}" if inj is not None else "")
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


def _queue_lines(rd, flt: DumpFilter, rec, taken, as_json):
    """The commands a record made the ITSes take from their queues, after the record's own
    line, numbered RECORD.k (k from 1: .0 would be the record itself)."""
    ri, off, t, inj = rd.record_index, rd.offset, rec[1], rec[2]
    lines: list[Any] = []
    for k, (its, raw, err) in enumerate(taken, 1):
        cmd = (F.COMMAND, t, inj, its, raw)
        if not flt.record_ok(cmd):
            continue
        if as_json:
            j = {"record": ri, "byte_offset": off, "index": k, "from_queue": True}
            lines.append({**j, **_record_json(cmd), "error": err})
        else:
            ret = f" -> {R.error_name(err)}" if err else ""
            text = describe_record(cmd, flt.clock)
            lines.append(f"{ri:>8}.{k:<5} @{off:<10} {text}  (from the queue){ret}")
    return lines


def dump_lines(rd, flt: DumpFilter, *, expand=False, as_json=False):
    """The lines of `gictools dump`, lazily: text, or (as_json) one dict per line for the
    CLI's JSON printer. A record's line is followed by the commands it made an ITS take
    from its command queue (QueueWatch)."""
    clock = flt.clock
    queue = QueueWatch(rd.header)
    for rec in rd:
        clock.start(rec)
        taken = queue.feed(rec)
        if flt.record_ok(rec):
            yield from _record_lines(rd, flt, rec, expand, as_json)
        if taken:
            yield from _queue_lines(rd, flt, rec, taken, as_json)


def _record_lines(rd, flt: DumpFilter, rec, expand, as_json):
    ri, off = rd.record_index, rd.offset
    extra = ""
    if rec[0] == F.MSI_BLOCK:
        mask = flt.msi_mask(rec)
        if mask is not None and not mask.any():
            return
        if expand:
            yield from _expanded(ri, off, flt.clock, rec, mask, as_json)
            return
        if mask is not None and not mask.all():
            extra = f" ({int(mask.sum())} of {rec[1]} match)"
    if as_json:
        yield {"record": ri, "byte_offset": off, **_record_json(rec)}
    else:
        yield f"{ri:>8} @{off:<10} {describe_record(rec, flt.clock)}{extra}"


def _expanded(ri, off, clock, rec, mask, as_json):
    """An MSI_BLOCK as one line per MSI (those mask lets through)."""
    _, n, its, ts, dev, ev, inj = rec
    idx = range(n) if mask is None else np.flatnonzero(mask).tolist()
    tl, dl, el = ts.tolist(), dev.tolist(), ev.tolist()
    il = inj.tolist() if inj is not None else None
    for k in idx:
        i = None if il is None else il[k]
        if as_json:
            yield {
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
        else:
            yield f"{ri:>8}.{k:<5} @{off:<10} {_msi_line(clock, tl[k], i, its, dl[k], el[k])}"


# --- latency histograms ---------------------------------------------------------------------
HIST_WIDTH = 52  # bpftrace's bar width


def _pow2_label(n: int) -> str:
    for shift, suffix in ((40, "T"), (30, "G"), (20, "M"), (10, "K")):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{suffix}"
    return str(n)


def log2_buckets(counts) -> list[tuple[int | None, int | None, int]]:
    """(lo, hi, count) per power-of-two bucket as bpftrace's hist(): (..., 0) for negative
    values (lo None), [0], [1], [2, 4), [4, 8), ... (hi None for the one-value buckets),
    every bucket from the lowest to the highest non-empty one. counts: value -> count (a
    Counter), or an array of values."""
    if not isinstance(counts, dict):
        vals, ns = np.unique(np.asarray(counts, dtype=np.int64), return_counts=True)
        counts = dict(zip(vals.tolist(), ns.tolist()))
    by: dict[int, int] = {}
    for v, n in counts.items():
        # -2: negative; -1: [0]; k: [2^k, 2^(k+1))
        b = -2 if v < 0 else -1 if v == 0 else int(v).bit_length() - 1
        by[b] = by.get(b, 0) + int(n)
    if not by:
        return []
    out: list[tuple[int | None, int | None, int]] = []
    for b in range(min(by), max(by) + 1):
        if b == -2:
            out.append((None, 0, by.get(b, 0)))
            continue
        lo, hi = (0, None) if b == -1 else (1, None) if b == 0 else (1 << b, 2 << b)
        out.append((lo, hi, by.get(b, 0)))
    return out


def hist_text(title: str, counts) -> str:
    """A latency histogram as bpftrace prints hist(): a title line, then per bucket its
    range, count and a bar of @ scaled to the largest bucket."""
    rows = log2_buckets(counts)
    top = max((n for _, _, n in rows), default=0)
    lines = [f"@{title}:"]
    for lo, hi, n in rows:
        if lo is None:
            label = "(..., 0)"
        else:
            label = f"[{lo}]" if hi is None else f"[{_pow2_label(lo)}, {_pow2_label(hi)})"
        bar = "@" * (n * HIST_WIDTH // top if top else 0)
        lines.append(f"{label:<20}{n:>8} |{bar:<{HIST_WIDTH}}|")
    if not rows:
        lines.append("(no MSIs)")
    return "\n".join(lines)


def hist_json(counts) -> list[dict]:
    """The buckets as data: lo (inclusive; null for negatives), hi (exclusive; null for
    [0] and [1]), count."""
    return [{"lo": lo, "hi": hi, "count": n} for lo, hi, n in log2_buckets(counts)]

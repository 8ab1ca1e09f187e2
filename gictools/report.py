"""Human-readable text for replay summaries and trace listings (kept out of the CLI and model)."""

import numpy as np

from gictools import regs as R
from gictools.model.commands import decode_command
from gictools.trace import format as F


def _fmt(v, pct=False):
    if v is None:
        return "-"
    if pct:
        return f"{100 * v:.2f}%"
    return f"{v:,}" if isinstance(v, int) else str(v)


def summary_table(reports) -> str:
    """Policies side by side: events, MSIs, commands, errors, cache outcomes, latency."""
    rows = [
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
        rows.append((f"MSI {R.error_name(c)}", lambda r, c=c: _fmt(r.msi_errors.get(c, 0))))
    codes = sorted({c for r in reports for c in r.command_errors})
    for c in codes:
        rows.append((f"cmd {R.error_name(c)}", lambda r, c=c: _fmt(r.command_errors.get(c, 0))))
    head = ["policy"] + [r.policy for r in reports]
    body = [[name] + [f(r) for r in reports] for name, f in rows]
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    lines = [
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths))
        )
    ]
    lines.append("  ".join("-" * w for w in widths))
    for b in body:
        lines.append(
            "  ".join(
                x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(b, widths))
            )
        )
    return "\n".join(lines)


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

    def text(self, header) -> str:
        vm = header["vm"]
        out = [
            f"format     {header['format']} {header['version'][0]}.{header['version'][1]}",
            f"source     {header.get('source', '')}",
            f"vm         {vm['vcpus']} vCPUs, kernel {vm.get('kernel') or '-'}, "
            f"{len(vm.get('itses', []))} ITS at "
            + ", ".join(f"{i['base']:#x}" for i in vm.get("itses", [])),
            f"metadata   {header.get('metadata', {})}",
            "records    " + ", ".join(f"{k} {v:,}" for k, v in self.counts.items()),
            f"MSIs       {self.msis:,}",
            "commands   "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.commands.items())) or "-"),
        ]
        if self.dev[0] is not None:
            out.append(
                f"DeviceIDs  {self.dev[0]:#x}..{self.dev[1]:#x}   "
                f"EventIDs {self.ev[0]:#x}..{self.ev[1]:#x}"
            )
        if self.t_first is not None:
            out.append(
                f"duration   {(self.t_last - self.t_first) / 1e9:.6f} s "
                f"({self.t_first}..{self.t_last} ns)"
            )
        return "\n".join(out)

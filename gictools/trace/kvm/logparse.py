"""Read the raw log `record.sh` writes: tracefs text lines of its probes, and its `#` lines.

One event per line, as trace_pipe prints it::

    vgic_lpi_stress-274 [001] d.... 66.481917: msi: (vgic_its_inject_msi+0x0/0xd8) a=0x8010040 data=0 ...
    vgic_lpi_stress-273 [001] ..... 66.465785: kvm_mmio: mmio write len 4 gpa 0x8020000 val 0x13

and the recorder's own lines (`# kernel 6.12.118+deb12-arm64`, `# stats cpu 0 overrun 0 dropped 0`,
`# end lost 0`, ...). A line that is neither is an error naming its number: a log is the input of a
replay, so nothing in it is guessed.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, cast

from gictools.errors import ImportFormatError, StrPath

FILTERED_PROBES = ("create_vm", "vm_ioctl", "queue")  # record.sh keeps only some of their calls
MAX_LINE = 8192  # the longest event line the recorder writes is ~900 bytes (a 32-word stack window)

_EVENT = re.compile(
    r"^\s*(?P<task>.*?)-(?P<pid>\d+)\s+(?:\(\s*(?P<tgid>-+|\d+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[^\s\[]{4,5})\s+)?(?P<sec>\d+)\.(?P<frac>\d{1,9}):\s+"
    r"(?P<name>[A-Za-z_]\w*):\s?(?P<rest>.*)$"
)
_LOST = re.compile(r"^CPU:(?P<cpu>\d+) \[LOST (?P<n>\d+) EVENTS\]\s*$")
_MMIO = re.compile(
    r"^mmio (?P<type>write|read|unsatisfied-read) len (?P<len>\d+) gpa (?P<gpa>0x[0-9a-f]+) "
    r"val (?P<val>0x[0-9a-f]+)\s*$"
)
_KV = re.compile(r"(\w+)=(\S+)")


@dataclass
class Event:
    line: int
    tid: int
    tgid: int | None  # the thread group (process), where the log has it (record-tgid)
    t_ns: int
    name: str
    f: dict[str, Any]  # the probe's fields (ints), or the tracepoint's


@dataclass
class LogInfo:
    """What the `#` lines of a log say (the recorder's header, stats and end)."""

    kernel: str | None = None
    machine: str | None = None
    date: str | None = None
    cpus: int | None = None
    run: str | None = None  # the command line recorded from its start
    attach: str | None = None  # "PID cmdline": attached mid-life
    pid: int | None = None  # the VMM's process id: its events are the VM's
    exit: int | None = None
    probes: list[str] = field(default_factory=list)
    noprobe: list[str] = field(default_factory=list)
    overruns: dict[int, tuple[int, int]] = field(default_factory=dict)  # cpu -> (overrun, dropped)
    kprobe_misses: dict[str, int] = field(default_factory=dict)
    kprobe_hits: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)  # event lines in the log, by name
    lost_lines: int = 0  # trace_pipe's "CPU:N [LOST M EVENTS]"
    lost_events: int = 0
    end: bool = False  # the recorder finished (a log without "# end" was cut short)

    def unrecorded(self) -> dict[str, int]:
        """Probe hits with no line in the log, by probe: events the kernel dropped without
        counting them as overruns. Entry probes only: the ioctl probes are filtered, so their
        hits exceed their lines by design, and a return probe's hits count calls, one of which may
        still run when recording stops (a lost return shows as an operation without a result)."""
        out = {}
        for name, hits in self.kprobe_hits.items():
            if name in FILTERED_PROBES or name.endswith("_ret"):
                continue
            n = hits - self.events.get(name, 0)
            if n > 0:
                out[name] = n
        return out

    @property
    def lost(self) -> bool:
        return bool(
            self.lost_events
            or any(o or d for o, d in self.overruns.values())
            or any(self.kprobe_misses.values())
            or self.unrecorded()
        )

    def loss_summary(self) -> str:
        parts = []
        if self.lost_events:
            parts.append(f"{self.lost_events} events lost in the trace pipe")
        over = {c: od for c, od in self.overruns.items() if od[0] or od[1]}
        if over:
            parts.append(
                "ring-buffer overruns "
                + ", ".join(f"cpu{c}: {o} overrun, {d} dropped" for c, (o, d) in over.items())
            )
        miss = {k: v for k, v in self.kprobe_misses.items() if v}
        if miss:
            parts.append("kprobe misses " + ", ".join(f"{k}: {v}" for k, v in miss.items()))
        un = self.unrecorded()
        if un:
            parts.append(
                "probe hits missing from the log " + ", ".join(f"{k}: {v}" for k, v in un.items())
            )
        return "; ".join(parts)


def _int(v: str, name: str, line: int, path: StrPath) -> int:
    try:
        n = int(v, 0)
    except ValueError:
        raise ImportFormatError(
            f"field {name}={v!r} is not a number", line=line, path=path
        ) from None
    if not -(2**63) <= n < 2**64:  # a probe fetches at most 64 bits
        raise ImportFormatError(f"field {name}={v} is wider than 64 bits", line=line, path=path)
    return n


def _comment(info: LogInfo, text: str, line: int, path: StrPath) -> None:
    key, _, rest = text.partition(" ")
    w = rest.split()
    try:
        if key == "kernel":
            info.kernel = rest.strip()
        elif key == "machine":
            info.machine = rest.strip()
        elif key == "date":
            info.date = rest.strip()
        elif key == "cpus":
            info.cpus = int(rest)
        elif key == "run":
            info.run = rest
        elif key == "attach":
            info.attach = rest
        elif key == "pid":
            info.pid = int(rest)
        elif key == "exit":
            info.exit = int(rest)
        elif key == "probes":
            info.probes = w
        elif key == "noprobe":
            info.noprobe.append(rest)
        elif key == "stats":  # stats cpu N overrun O dropped D
            info.overruns[int(w[1])] = (int(w[3]), int(w[5]))
        elif key == "kprobe":  # kprobe NAME hits H missed M
            info.kprobe_hits[w[0]] = int(w[2])
            info.kprobe_misses[w[0]] = int(w[4])
        elif key == "end":
            info.end = True
    except (ValueError, IndexError):
        raise ImportFormatError(f"malformed '# {key}' line", line=line, path=path) from None


def _lines(fh, path: StrPath) -> Iterator[bytes]:
    """The file's lines, each at most MAX_LINE bytes read (a damaged gzip stream is an error)."""
    n = 0
    try:
        while True:
            raw = fh.readline(MAX_LINE + 1)
            if not raw:
                return
            n += 1
            yield raw
    except (OSError, EOFError, zlib.error) as e:
        raise ImportFormatError(f"damaged compressed log: {e}", line=n + 1, path=path) from None


def read_log(path: StrPath, info: LogInfo) -> Iterator[Event]:
    """The events of the log at path, in file order; fills info from its `#` lines."""
    fh: IO[bytes]
    try:
        fh = open(path, "rb")
        if fh.read(2) == b"\x1f\x8b":  # gzip (a log compressed to be sent or stored)
            fh.close()
            fh = cast(IO[bytes], gzip.open(path, "rb"))
        else:
            fh.seek(0)
    except OSError as e:
        raise ImportFormatError(f"cannot read: {e.strerror}", path=path) from None
    with fh:
        first = True
        for n, raw in enumerate(_lines(fh, path), 1):
            if len(raw) > MAX_LINE:
                raise ImportFormatError(
                    f"line longer than {MAX_LINE} bytes: not a record.sh log", line=n, path=path
                )
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise ImportFormatError("not UTF-8 text", line=n, path=path) from None
            if first:
                if not line.startswith("# gictools-kvm-record 1"):
                    raise ImportFormatError(
                        "not a `gictools record kvm` log (no '# gictools-kvm-record 1' first line)",
                        line=n,
                        path=path,
                    )
                first = False
                continue
            if line.startswith("#"):
                _comment(info, line[1:].strip(), n, path)
                continue
            if not line.strip():
                continue
            m = _LOST.match(line)
            if m:
                info.lost_lines += 1
                info.lost_events += int(m["n"])
                continue
            m = _EVENT.match(line)
            if not m:
                raise ImportFormatError("not a trace event line", line=n, path=path)
            t_ns = int(m["sec"]) * 1_000_000_000 + int(m["frac"].ljust(9, "0"))
            name, rest = m["name"], m["rest"]
            f: dict[str, Any]
            if name == "kvm_mmio":
                mm = _MMIO.match(rest)
                if not mm:
                    raise ImportFormatError("malformed kvm_mmio event", line=n, path=path)
                f = {
                    "type": mm["type"],
                    "len": int(mm["len"]),
                    "gpa": int(mm["gpa"], 16),
                    "val": int(mm["val"], 16),
                }
            else:
                close = rest.find(") ")
                body = rest[close + 2 :] if rest.startswith("(") and close >= 0 else rest
                f = {k: _int(v, k, n, path) for k, v in _KV.findall(body)}
            info.events[name] = info.events.get(name, 0) + 1
            tg = m["tgid"]
            yield Event(n, int(m["pid"]), int(tg) if tg and tg[0] != "-" else None, t_ns, name, f)
        if first:
            raise ImportFormatError("empty log", path=path)

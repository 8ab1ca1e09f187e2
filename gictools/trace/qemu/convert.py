"""The one-call forms: convert() reads a capture (and a migration's destination) into
(vm, metadata, records); import_qemu() also writes the trace file."""

import gzip
import os
import time
import zlib

from gictools.errors import ImportFormatError
from gictools.outputs import check_output
from gictools.trace.qemu.importer import Importer
from gictools.trace.qemu.inputs import log_lines, open_text, read_cmdline, read_cmdq, read_lpiprop
from gictools.trace.qemu.machine import QEMU_VIRT_ITS_BASE
from gictools.trace.qemu.output import write_trace
from gictools.trace.qemu.summary import ImportSummary


def _feed_file(imp, log, progress=None):
    """Feed the log's lines to imp; progress(done, total) in bytes of the file on disk
    (compressed ones included, so the bar ends at the end), every 4096 lines."""
    log = os.fspath(log)
    try:
        with open(log, "rb") as disk, open_text(log, disk) as f:
            total = os.fstat(disk.fileno()).st_size
            feed = imp.feed
            for n, line in enumerate(log_lines(f, log), 1):
                feed(line)
                if progress is not None and not n & 4095:
                    progress(disk.tell(), total)
            if progress is not None:
                progress(total, total)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ImportFormatError(
            f"damaged gzip stream after {imp.lineno} complete lines ({e or type(e).__name__})",
            line=imp.lineno + 1,
            path=log,
        ) from None


def _aux(cmdq, lpiprop, cmdline):
    return dict(
        cmdq=read_cmdq(cmdq) if cmdq else None,
        lpiprop=read_lpiprop(lpiprop) if lpiprop else None,
        cmdline=read_cmdline(cmdline) if cmdline else None,
    )


def convert(
    log,
    *,
    cmdq=None,
    lpiprop=None,
    cmdline=None,
    its_base=QEMU_VIRT_ITS_BASE,
    migrate_to=None,
    dst_cmdq=None,
    dst_lpiprop=None,
    dst_cmdline=None,
    progress=None,
):
    """Parse a QEMU trace log (and the optional dumps; with migrate_to, the destination of a
    live migration and its own dumps); (vm, metadata, records).
    progress(done, total): bytes of the log(s) read so far, for a progress bar."""
    log = os.fspath(log)
    imp = Importer(**_aux(cmdq, lpiprop, cmdline), its_base=its_base, path=log)
    dst = None if migrate_to is None else os.fspath(migrate_to)
    sizes = [os.path.getsize(x) for x in (log, dst) if x is not None]
    step = None
    if progress is not None:
        step = lambda done, _total: progress(done, sum(sizes))  # noqa: E731
    _feed_file(imp, log, step)
    if dst is not None:
        imp.migrate(**_aux(dst_cmdq, dst_lpiprop, dst_cmdline), path=dst)
        step2 = None if step is None else (lambda done, t: step(sizes[0] + done, t))
        _feed_file(imp, dst, step2)
    return imp.finish()


# convert()'s file parameters, in the order the trace's metadata lists them
_FILES = ("cmdq", "lpiprop", "cmdline", "migrate_to", "dst_cmdq", "dst_lpiprop", "dst_cmdline")


def import_qemu(log, out, *, progress=None, **options) -> ImportSummary:
    """Convert a QEMU trace log (with migrate_to: a migration's source and destination) into
    trace file `out`; options are convert()'s (the dumps, its_base, migrate_to and the
    destination's dumps). Raises ImportFormatError on bad input (and then writes nothing)."""
    t0 = time.perf_counter()
    # before any work: never overwrite an input
    check_output(out, [log, *(options.get(k) for k in _FILES)])
    vm, meta, records = convert(log, progress=progress, **options)
    inputs = {"log": os.path.basename(os.fspath(log))}
    for k in _FILES:
        if options.get(k):
            inputs[k] = os.path.basename(os.fspath(options[k]))
    meta["inputs"] = inputs
    source = f"qemu import of {inputs['log']}"
    if "migrate_to" in inputs:
        source += f" migrated to {inputs['migrate_to']}"
    try:
        nrec, msis = write_trace(out, vm, meta, records, source=source)
    except ValueError as e:  # a value the writer refuses: the log's, since the rest is ours
        raise ImportFormatError(f"cannot write the trace: {e}", path=os.fspath(log)) from None
    return ImportSummary(
        out=os.fspath(out),
        vm=vm,
        metadata=meta,
        records=nrec,
        msis=msis,
        seconds=time.perf_counter() - t0,
    )

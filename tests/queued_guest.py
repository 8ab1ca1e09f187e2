"""One small guest whose commands go through the command queue (guest memory, then a
GITS_CWRITER write, as the Recorder API and real guests issue them), for the dump/info and
the Parquet tests of queued commands."""

from gictools import VM
from gictools.guest import Guest
from gictools.trace.recorder import Recorder


def record_queued(path, guest=Guest, *, more: bool = True, msis: bool = True) -> list[int]:
    """2 MAPC, MAPD, 4 MAPTI (one with pINTID 100: refused), [MOVI, INVALL,] SYNC, [then an MSI
    to each mapped event]; returns the commands' KVM results."""
    vm = VM(2)
    vm.add_its(0x0808_0000)
    with Recorder(vm, path) as rec:
        g = guest(rec, rec.itses[0])
        g.enable_lpis()
        results = [g.mapc(0, 0), g.mapc(1, 1), g.mapd(5, 4)]
        for e in range(3):
            g.set_lpi_config(8192 + e)
            results.append(g.mapti(5, e, 8192 + e, e % 2))
        results.append(g.mapti(5, 9, 100, 0))
        if more:
            results += [g.movi(5, 0, 1), g.invall(0)]
        results.append(g.sync(0))
        for e in range(3 if msis else 0):
            rec.signal_msi(0, 5, e)
    return results

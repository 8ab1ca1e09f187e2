"""The recorded-answers corpus: generated op-script cases and a real kernel's answers to them.

Cases come from random.Random(seed) (no test-only dependency): command streams through the
queue, save/restore of images with random corruptions, register sequences, MSIs at the
edges, and the distributor enabled. Stored in fixtures/kvm-answers/:

    cases.msgpack.gz          {"format": "gictools-kvm-cases", "version": 1, "seed": S,
                               "cases": [[case_id, kind, script_text], ...]}
    KERNEL.msgpack.gz         {"format": "gictools-kvm-answers", "version": 1, "kernel":
                               "6.1.192", "uname": ..., "answers": [[case_id, answers_text], ...]}

Scripts are stored, not regenerated, so the recorded answers stay valid when the generator
changes. Regenerate with `python -m gictools.kvm.nested --corpus` (docs/kvm-check.md).
Here: the case classes and generate(); the Builder and the guest-memory layout are in
casebuilder.py, the file formats in corpusfile.py (both re-exported here).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from gictools import regs as R
from gictools.kvm import ops as O
from gictools.kvm.casebuilder import (  # noqa: F401  (public names of the corpus)
    COLLT,
    DEVT,
    DEVT_L2,
    IDBITS,
    ITT,
    ITT_DEVICES,
    LPI,
    PEND,
    PEND_BYTES,
    PROP,
    QUEUE,
    QUEUE_PAGES,
    Builder,
    baser,
    cbaser,
    itt_of,
)
from gictools.kvm.corpusfile import (  # noqa: F401  (public names of the corpus)
    ANSWERS_FORMAT,
    CASES_FILE,
    CASES_FORMAT,
    FORMAT_VERSION,
    MAX_FILE,
    CorpusError,
    load_answers,
    load_cases,
    save_answers,
    save_cases,
)


# --- case classes ---------------------------------------------------------------------------
def gen_cmds(b: Builder) -> None:
    """A random command stream through the queue, then the MSIs, the tables, the pending bits."""
    b.standard()
    if b.rng.random() < 0.5:
        b.mapped_world(b.rng.randrange(1, 4), b.rng.randrange(1, 5))
    for _ in range(b.rng.randrange(5, 40)):
        b.random_command()
        if b.rng.random() < 0.15:
            b.add("msi", b.rand_dev(), b.rand_ev())
    b.probe_msis()
    b.probe_tables()


def gen_msi_edge(b: Builder) -> None:
    """MSIs at the edges: IDs out of range, unmapped, LPIs off, ITS off, tables invalid."""
    rng = b.rng
    b.lpi_tables([v for v in range(b.vcpus) if rng.random() < 0.7])
    b.its_tables(indirect=rng.random() < 0.2, enable=True)
    b.mapped_world(2, 4)
    b.probe_msis(extra=6)
    for _ in range(rng.randrange(1, 4)):
        step = rng.randrange(6)
        if step == 0:
            b.add("rd_w", rng.randrange(b.vcpus), R.GICR_CTLR, 0)  # EnableLPIs 1 -> 0
        elif step == 1:
            b.add("its_w", R.GITS_CTLR, 0)  # ITS disabled
        elif step == 2:
            b.add("its_w", R.GITS_CTLR, R.GITS_CTLR_ENABLE)
        elif step == 3:
            b.add("memw", PROP + rng.randrange(16), bytes((rng.choice((0, 0xA2, 0xA3)),)))
            b.cmd("INV", DeviceID=rng.randrange(2), EventID=rng.randrange(4))
        elif step == 4:
            b.add("rd_w", rng.randrange(b.vcpus), R.GICR_CTLR, R.GICR_CTLR_ENABLE_LPIS)
        else:
            b.cmd("DISCARD", DeviceID=rng.randrange(2), EventID=rng.randrange(4))
        b.probe_msis(extra=4)
    b.add("savep")
    for v in range(b.vcpus):
        b.add("memr", PEND + 0x1_0000 * v, PEND_BYTES)


# The registers a case reads back at its end (gen_regs here, kvm/convert.py's probes): the
# ITS's, then each redistributor's table bases
ITS_READBACK = (
    R.GITS_CTLR,
    R.GITS_CBASER,
    R.GITS_CWRITER,
    R.GITS_CREADR,
    R.GITS_BASER,
    R.GITS_BASER + 8,
)
RD_READBACK = (R.GICR_PROPBASER, R.GICR_PROPBASER + 4, R.GICR_PENDBASER, R.GICR_PENDBASER + 4)
ITS_OFFSETS = (
    R.GITS_CTLR,
    R.GITS_IIDR,
    R.GITS_TYPER,
    R.GITS_TYPER + 4,
    R.GITS_CBASER,
    R.GITS_CBASER + 4,
    R.GITS_CWRITER,
    R.GITS_CREADR,
    R.GITS_CREADR + 8,  # reserved
    *(R.GITS_BASER + 8 * n for n in (0, 1, 2, R.GITS_BASER_NR_REGS - 1)),
    R.GITS_BASER + 8 * R.GITS_BASER_NR_REGS,  # past the last GITS_BASER<n>
    R.GITS_IDREGS_BASE,
    R.GITS_PIDR2,
    R.GITS_IDREGS_BASE + 0x2C,  # the last ID register
    R.ITS_FRAME_SIZE // 2,  # the translation page, below GITS_TRANSLATER
    R.GITS_TRANSLATER,
    0x2,  # unaligned
    0x81,
)
RD_OFFSETS = (
    R.GICR_CTLR,
    R.GICR_TYPER,
    R.GICR_TYPER + 4,
    R.GICR_PROPBASER,
    R.GICR_PROPBASER + 4,
    R.GICR_PENDBASER,
    R.GICR_PENDBASER + 4,
)


def gen_regs(b: Builder) -> None:
    """Register sequences: ITS BASER/CBASER/CWRITER/CREADR/CTLR/IIDR, redistributor CTLR/BASERs."""
    rng = b.rng
    if rng.random() < 0.5:
        b.standard()
        if rng.random() < 0.5:
            b.mapped_world(1, 2)
    for _ in range(rng.randrange(6, 30)):
        r = rng.random()
        if r < 0.45:
            off = rng.choice(ITS_OFFSETS)
            if rng.random() < 0.6:
                kind = rng.randrange(5)
                if kind == 0:
                    val = rng.getrandbits(64)
                elif kind == 1:
                    val = baser(
                        rng.choice((DEVT, COLLT, 0, O.MEM_BASE + O.MEM_SIZE)),
                        valid=rng.randrange(2),
                        indirect=rng.randrange(2),
                        pages=rng.choice((1, 2, 256)),
                    )
                elif kind == 2:
                    val = cbaser(
                        rng.choice((QUEUE, 0, O.MEM_BASE + O.MEM_SIZE)),
                        rng.choice((1, 4, 256)),
                        rng.randrange(2),
                    )
                elif kind == 3:
                    val = rng.choice((0, 1, 0x20, 0x3FE0, 0x3FFF0, 0x1_0000, R.GITS_CTLR_ENABLE))
                else:
                    val = R.GITS_IIDR_LAYOUT.encode(
                        Implementer=R.IMPLEMENTER_ARM,
                        Revision=rng.randrange(3),
                        ProductID=R.PRODUCT_ID_KVM,
                    )
                b.add("its_w", off, val)
            b.add("its_r", off)
        elif r < 0.8:
            v = rng.randrange(b.vcpus)
            off = rng.choice(RD_OFFSETS)
            if rng.random() < 0.6:
                val = rng.choice((0, 1, rng.getrandbits(32), PROP | 0xF, PEND, 0x4000_0000 | 0x780))
                b.add("rd_w", v, off, val)
            b.add("rd_r", v, off)
        elif r < 0.9:
            b.random_command()
        else:
            b.add("msi", b.rand_dev(), b.rand_ev())
    for off in ITS_READBACK:
        b.add("its_r", off)
    for v in range(b.vcpus):
        for off in RD_READBACK:
            b.add("rd_r", v, off)


def gen_dist(b: Builder) -> None:
    """The distributor enabled (GICD_CTLR.EnableGrp1A): LPIs turned off, DISCARD of a pending LPI."""
    rng = b.rng
    b.add("dist_w", 0, 0x12)  # ARE_NS | EnableGrp1A
    b.standard()
    b.mapped_world(2, 3)
    for _ in range(rng.randrange(2, 6)):
        d, e = rng.randrange(2), rng.randrange(3)
        step = rng.randrange(5)
        if step == 0:
            b.add("msi", d, e)
        elif step == 1:
            b.cmd("INT", DeviceID=d, EventID=e)
        elif step == 2:
            b.add("rd_w", rng.randrange(b.vcpus), R.GICR_CTLR, 0)
        elif step == 3:
            b.cmd("DISCARD", DeviceID=d, EventID=e)
        else:
            b.cmd(
                "MAPTI",
                DeviceID=d,
                EventID=e,
                pINTID=LPI + rng.randrange(24),
                ICID=rng.randrange(4),
            )
            b.pairs.add((d, e))
    b.probe_msis(extra=0)
    b.probe_tables()


def _saved_world(b: Builder) -> tuple[Any, dict[int, int], dict[int, int]]:
    """The model's VM after a random mapping and a save, its ITS registers and the non-zero
    guest-memory qwords (by address); b takes over the source's IDs and table layout."""
    from gictools.kvm.model import ModelRunner

    rng = b.rng
    src = Builder(rng, b.case_id, b.kind, b.vcpus)
    src.standard()
    src.mapped_world(rng.randrange(1, 4), rng.randrange(1, 5))
    for _ in range(rng.randrange(0, 8)):
        src.random_command()
    for _ in range(rng.randrange(0, 4)):
        src.add("msi", src.rng.randrange(3), src.rng.randrange(4))
    src.add("save")
    src.add("savep")
    runner = ModelRunner("6.1")
    runner.run(src.lines)
    vm, its = runner.vm, runner.its
    assert vm is not None and its is not None
    regs = {
        off: its.read_reg(off)
        for off in (
            R.GITS_CTLR,
            R.GITS_IIDR,
            R.GITS_CBASER,
            R.GITS_CREADR,
            R.GITS_CWRITER,
            R.GITS_BASER,
            R.GITS_BASER + 8,
        )
    }
    words: dict[int, int] = {}
    for gpa, page in vm.memory.nonzero_pages():
        for off in range(0, len(page), 8):
            q = int.from_bytes(page[off : off + 8], "little")
            if q:
                words[gpa + off] = q
    b.pairs, b.devs, b.indirect = src.pairs, src.devs, src.indirect
    return vm, regs, words


def _corrupt(rng: random.Random, regs: dict[int, int], words: dict[int, int]) -> None:
    """One to three corruptions of the saved image: a register, or a table entry (random,
    one bit flipped, zeroed, copied to another slot, fields out of range)."""
    tables = [a for a in words if DEVT <= a < QUEUE or ITT <= a < ITT + 0x1000 * ITT_DEVICES]
    for _ in range(rng.randrange(1, 4)):
        k = rng.randrange(7)
        if k == 6 or not tables:
            which = rng.choice(
                (R.GITS_BASER, R.GITS_BASER + 8, R.GITS_CBASER, R.GITS_CREADR, R.GITS_IIDR)
            )
            regs[which] = rng.choice(
                (0, regs[which] ^ (1 << rng.randrange(64)), rng.getrandbits(64))
            )
            continue
        a = rng.choice(tables)
        q = words[a]
        if k == 0:
            q = rng.getrandbits(64)
        elif k == 1:
            q ^= 1 << rng.randrange(64)
        elif k == 2:
            q = 0
        elif k == 3:  # another slot gets this entry: duplicates, out-of-order IDs
            a = (a & ~0xFFF) + 8 * rng.randrange(16)
        elif k == 4:
            q |= rng.choice((0x1F, 0x3FFF << 49, 0xFFFF << 48, 0xFFFF << 16))
        else:
            q = (q & (1 << 63)) | (rng.getrandbits(16) << 49) | (q & ((1 << 49) - 1))
        words[a] = q & ((1 << 64) - 1)


def _write_words(b: Builder, words: dict[int, int]) -> None:
    """Guest memory as memw lines, one per run of consecutive non-zero qwords."""
    run_start: int | None = None
    run = bytearray()
    for w in [*sorted(words), None]:
        if w is not None and run_start is not None and w == run_start + len(run):
            run += words[w].to_bytes(8, "little")
            continue
        if run_start is not None:
            b.add("memw", run_start, bytes(run))
        if w is not None:
            run_start, run = w, bytearray(words[w].to_bytes(8, "little"))


def gen_saverestore(b: Builder, corrupt: bool) -> None:
    """An image (tables the model saved for a random mapping) restored in arm-vgic-its.rst's order
    into a fresh VM, possibly corrupted; then the MSIs, a save and the pending bits."""
    vm, regs, words = _saved_world(b)
    if corrupt:
        _corrupt(b.rng, regs, words)
    _write_words(b, words)  # memory first
    # redistributors (PROPBASER, PENDBASER, then GICR_CTLR), then the ITS: CBASER, IIDR,
    # BASER<n>, CREADR, CWRITER, RESTORE_TABLES, GITS_CTLR last (arm-vgic-its.rst)
    for v in range(b.vcpus):
        b.rd64(v, R.GICR_PROPBASER, vm.read_redist_reg(v, R.GICR_PROPBASER))
        b.rd64(v, R.GICR_PENDBASER, vm.read_redist_reg(v, R.GICR_PENDBASER))
        b.add("rd_w", v, R.GICR_CTLR, vm.read_redist_reg(v, R.GICR_CTLR, 4) & 1)
    for off in (
        R.GITS_CBASER,
        R.GITS_IIDR,
        R.GITS_BASER,
        R.GITS_BASER + 8,
        R.GITS_CREADR,
        R.GITS_CWRITER,
    ):
        b.add("its_w", off, regs[off])
    b.add("restore")
    b.add("its_w", R.GITS_CTLR, regs[R.GITS_CTLR] & R.GITS_CTLR_ENABLE)
    b.probe_msis()
    b.probe_tables()


def gen_baser_change(b: Builder) -> None:
    """GITS_BASER0/1 rewritten while the ITS is off (same value, moved, size, Valid 0), then
    the ITS on again: which devices and collections survive (vgic_mmio_write_its_baser)."""
    rng = b.rng
    b.standard()
    b.mapped_world(rng.randrange(1, 4), rng.randrange(1, 4))
    b.probe_msis(extra=0)
    b.add("its_w", R.GITS_CTLR, 0)
    for _ in range(rng.randrange(1, 3)):
        n = rng.randrange(2)
        pa = (DEVT, COLLT)[n]
        val = rng.choice(
            (
                baser(pa, indirect=int(b.indirect and n == 0)),  # unchanged
                baser(DEVT_L2 + 0x1_0000 * rng.randrange(3)),  # moved
                baser(pa, indirect=int(b.indirect and n == 0), pages=2),  # resized
                baser(pa, valid=0),  # Valid 1 -> 0
                rng.getrandbits(64),
            )
        )
        b.add("its_w", R.GITS_BASER + 8 * n, val)
        b.add("its_r", R.GITS_BASER + 8 * n)
    b.add("its_w", R.GITS_CTLR, R.GITS_CTLR_ENABLE)
    b.probe_msis()
    b.probe_tables()


def gen_l1_zeroed(b: Builder) -> None:
    """A two-level device table whose level-1 entry the guest zeroes (or corrupts) after MAPD:
    what SAVE_TABLES does with the device (vgic_its_save_device_tables)."""
    rng = b.rng
    b.lpi_tables(list(range(b.vcpus)))
    b.its_tables(indirect=True)
    b.mapped_world(rng.randrange(1, 3), rng.randrange(1, 3))
    if rng.random() < 0.5:
        dev = rng.choice((0x2000, 0x4000))
        b.cmd("MAPD", DeviceID=dev, Size=1, ITT_addr=itt_of(dev) >> 8, V=1)
        b.cmd("MAPTI", DeviceID=dev, EventID=1, pINTID=LPI + 40, ICID=0)
        b.devs.add(dev)
        b.pairs.add((dev, 1))
    l1 = rng.choice((0, 0, 1, 2))
    val = rng.choice((0, 0, 1 << 63, rng.getrandbits(64)))
    b.add("memw", DEVT + 8 * l1, val.to_bytes(8, "little"))
    b.probe_msis()
    b.probe_tables()


def gen_ctrl(b: Builder) -> None:
    """The ITS's control attributes in odd orders on a live ITS: RESET, SAVE twice, RESTORE on
    top of live devices (duplicate IDs), RESTORE while enabled, CREADR/CWRITER/IIDR writes."""
    rng = b.rng
    b.standard()
    b.mapped_world(rng.randrange(1, 4), rng.randrange(1, 4))
    for _ in range(rng.randrange(2, 7)):
        step = rng.randrange(9)
        if step == 0:
            b.add("itsreset")
        elif step == 1:
            b.add("save")
        elif step == 2:
            b.add("restore")
        elif step == 3:
            b.add("its_w", R.GITS_CTLR, rng.choice((0, R.GITS_CTLR_ENABLE)))
        elif step == 4:
            b.add("its_w", R.GITS_CREADR, rng.choice((0, 0x20, 0x40, 0x1F, QUEUE_PAGES * 4096)))
        elif step == 5:
            b.add("its_w", R.GITS_CWRITER, rng.choice((0, 0x20, 0x60, QUEUE_PAGES * 4096, 0x21)))
        elif step == 6:
            b.add(
                "its_w",
                R.GITS_IIDR,
                R.GITS_IIDR_LAYOUT.encode(
                    Implementer=R.IMPLEMENTER_ARM,
                    Revision=rng.randrange(3),
                    ProductID=R.PRODUCT_ID_KVM,
                ),
            )
        elif step == 7:
            b.add("savep")
        else:
            b.random_command()
        b.add("its_r", R.GITS_CTLR)
        b.add("its_r", R.GITS_CREADR)
        if rng.random() < 0.5:
            b.probe_msis(extra=1)
    b.add("its_w", R.GITS_CTLR, R.GITS_CTLR_ENABLE)
    b.probe_msis()
    b.probe_tables()


def gen_big_vm(b: Builder) -> None:
    """More than 16 vCPUs (MPIDR Aff1 != 0): GICR_TYPER per vCPU, collections on the high
    vCPUs, MOVALL/SYNC between them, MSIs, the pending tables."""
    rng = b.rng
    b.vcpus = rng.randrange(17, 21)
    b.lines[0] = O.vm_line(b.case_id, b.vcpus)
    for v in range(b.vcpus):
        b.add("rd_r", v, R.GICR_TYPER)
        b.add("rd_r", v, R.GICR_TYPER + 4)
    b.standard()
    for c in range(4):
        b.cmd("MAPC", ICID=c, RDbase=rng.randrange(b.vcpus + 1), V=1)
    for d in range(2):
        b.cmd("MAPD", DeviceID=d, Size=2, ITT_addr=itt_of(d) >> 8, V=1)
        b.devs.add(d)
        for e in range(4):
            b.cmd("MAPTI", DeviceID=d, EventID=e, pINTID=LPI + 8 * d + e, ICID=rng.randrange(4))
            b.pairs.add((d, e))
    b.probe_msis(extra=0)
    for _ in range(rng.randrange(1, 4)):
        r = rng.randrange(3)
        if r == 0:
            b.cmd("MOVALL", RDbase=rng.randrange(b.vcpus), RDbase2=rng.randrange(b.vcpus))
        elif r == 1:
            b.cmd(
                "MOVI", DeviceID=rng.randrange(2), EventID=rng.randrange(4), ICID=rng.randrange(4)
            )
        else:
            b.cmd("SYNC", RDbase=rng.randrange(b.vcpus + 2))
    b.probe_msis(extra=0)
    b.probe_tables()


def gen_queue(b: Builder) -> None:
    """A one-page command queue run round more than once, commands queued while the ITS is
    off (run when it is enabled), CWRITER written past the queue."""
    rng = b.rng
    b.lpi_tables(list(range(b.vcpus)))
    b.add("its_w", R.GITS_CBASER, cbaser(pages=1))
    b.add("its_w", R.GITS_BASER, baser(DEVT))
    b.add("its_w", R.GITS_BASER + 8, baser(COLLT))
    if rng.random() < 0.5:
        b.cmd("MAPC", ICID=0, RDbase=0, V=1)  # queued, ITS still off
        b.add("its_r", R.GITS_CREADR)
    b.add("its_w", R.GITS_CTLR, R.GITS_CTLR_ENABLE)
    b.mapped_world(2, 2)
    for _ in range(rng.randrange(130, 300)):
        d, e = rng.randrange(2), rng.randrange(2)
        b.cmd(rng.choice(("INT", "CLEAR", "INV")), DeviceID=d, EventID=e)
        if rng.random() < 0.02:
            b.add("its_w", R.GITS_CWRITER, rng.choice((0x1000, 0x2000, 0xFE0)))
            b.add("its_r", R.GITS_CWRITER)
    b.probe_msis(extra=0)
    b.probe_tables()


def gen_dist_pending(b: Builder) -> None:
    """The distributor enabled and LPIs queued on vCPUs that never run: DISCARD, re-MAPTI of
    the same INTID, MOVI, MOVALL, CLEAR, EnableLPIs off and on, with the pending tables saved
    in between."""
    rng = b.rng
    b.add("dist_w", 0, 0x12)
    b.add("dist_r", 0)
    b.standard()
    b.mapped_world(2, 3)
    for _ in range(rng.randrange(3, 9)):
        d, e = rng.randrange(2), rng.randrange(3)
        step = rng.randrange(9)
        if step in (0, 1):
            b.add("msi", d, e)
        elif step == 2:
            b.cmd("DISCARD", DeviceID=d, EventID=e)
        elif step == 3:
            b.cmd(
                "MAPTI",
                DeviceID=d,
                EventID=e,
                pINTID=LPI + 8 * d + rng.randrange(4),
                ICID=rng.randrange(4),
            )
            b.pairs.add((d, e))
        elif step == 4:
            b.cmd("MOVI", DeviceID=d, EventID=e, ICID=rng.randrange(4))
        elif step == 5:
            b.cmd("MOVALL", RDbase=rng.randrange(b.vcpus), RDbase2=rng.randrange(b.vcpus))
        elif step == 6:
            b.cmd("CLEAR", DeviceID=d, EventID=e)
        elif step == 7:
            b.add(
                "rd_w",
                rng.randrange(b.vcpus),
                R.GICR_CTLR,
                rng.choice((0, R.GICR_CTLR_ENABLE_LPIS)),
            )
        else:
            b.add("savep")
            for v in range(b.vcpus):
                b.add("memr", PEND + 0x1_0000 * v, PEND_BYTES)
    b.probe_msis(extra=0)
    b.probe_tables()


def gen_bare(b: Builder) -> None:
    """A VM without an ITS device, or before KVM_DEV_ARM_VGIC_CTRL_INIT: KVM_SIGNAL_MSI,
    SAVE_PENDING_TABLES, and (initialised, no ITS) EnableLPIs and GICR_TYPER.PLPIS."""
    rng = b.rng
    flags = rng.choice((O.VM_NO_ITS, O.VM_NO_INIT, O.VM_NO_ITS | O.VM_NO_INIT))
    b.lines[0] = O.vm_line(b.case_id, b.vcpus, flags=flags)
    if not flags & O.VM_NO_INIT:
        b.lpi_tables(list(range(b.vcpus)))
        for v in range(b.vcpus):
            b.add("rd_r", v, R.GICR_CTLR)
            b.add("rd_r", v, R.GICR_TYPER)
    if not flags & O.VM_NO_ITS:
        b.add("its_r", R.GITS_CTLR)
        b.add("its_w", R.GITS_CBASER, cbaser())
        b.add("its_r", R.GITS_CBASER)
        b.add("save")
    for _ in range(rng.randrange(1, 4)):
        b.add("msi", b.rand_dev(), b.rand_ev())
    b.add("savep")


CLASSES: dict[str, tuple[int, Callable[[Builder], None]]] = {
    # name: (share of the cases in per mille, generator)
    "cmds": (330, gen_cmds),
    "bare": (10, gen_bare),
    "ctrl": (50, gen_ctrl),
    "big-vm": (20, gen_big_vm),
    "queue": (20, gen_queue),
    "dist-pending": (40, gen_dist_pending),
    "baser-change": (40, gen_baser_change),
    "l1-zeroed": (30, gen_l1_zeroed),
    "restore": (60, lambda b: gen_saverestore(b, corrupt=False)),
    "restore-corrupt": (160, lambda b: gen_saverestore(b, corrupt=True)),
    "regs": (120, gen_regs),
    "msi-edge": (90, gen_msi_edge),
    "dist": (30, gen_dist),
}


def generate(n: int, seed: int = 20) -> list[O.Case]:
    """n cases (the classes in CLASSES' proportions), reproducible from seed."""
    cases = []
    names = list(CLASSES)
    weights = [CLASSES[k][0] for k in names]
    for i in range(n):
        rng = random.Random(f"{seed}:{i}")
        kind = rng.choices(names, weights)[0]
        b = Builder(rng, i, kind, rng.choice((1, 2, 2, 3, 4)))
        CLASSES[kind][1](b)
        cases.append(b.case())
    return cases

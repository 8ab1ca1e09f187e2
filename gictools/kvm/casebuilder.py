"""Building one recorded-answers case: the guest-memory layout every case shares and the
Builder that writes a case's op lines (the guest driver's set-up, random commands, the probes).

The case classes that drive it are in gictools/kvm/corpus.py.
"""

from __future__ import annotations

import random

from gictools import regs as R
from gictools.cmdlayout import encode_command
from gictools.kvm import ops as O

# Guest-memory layout of every generated case (offsets from MEM_BASE; all inside MEM_SIZE).
PROP = O.MEM_BASE + 0x1_0000  # LPI configuration table, IDbits 16 (8 KiB used)
PEND = O.MEM_BASE + 0x2_0000  # + 0x1_0000 * vCPU: pending tables
DEVT = O.MEM_BASE + 0x10_0000  # device table (flat, one 64 KiB page; or level 1)
DEVT_L2 = O.MEM_BASE + 0x11_0000  # level-2 device tables (indirect), one 64 KiB page each
COLLT = O.MEM_BASE + 0x14_0000  # collection table
QUEUE = O.MEM_BASE + 0x15_0000  # command queue, QUEUE_PAGES 4 KiB pages
QUEUE_PAGES = 4
ITT = O.MEM_BASE + 0x20_0000  # + 0x1000 * DeviceID (DeviceID < ITT_DEVICES)
ITT_DEVICES = 64
LPI = 8192
IDBITS = 16
PEND_BYTES = (1 << IDBITS) // 8

_B, _C = R.GITS_BASER_LAYOUT, R.GITS_CBASER_LAYOUT


def cbaser(pa: int = QUEUE, pages: int = QUEUE_PAGES, valid: int = 1) -> int:
    return _C.encode(
        Valid=valid,
        PA=pa >> 12,
        Size=pages - 1,
        Shareability=R.GIC_BASER_InnerShareable,
        InnerCache=R.GIC_BASER_CACHE_RaWb,
    )


def baser(pa: int, valid: int = 1, indirect: int = 0, pages: int = 1) -> int:
    return _B.encode(
        Valid=valid,
        Indirect=indirect,
        PA=pa >> 16,
        Size=pages - 1,
        Shareability=R.GIC_BASER_InnerShareable,
        InnerCache=R.GIC_BASER_CACHE_RaWb,
        Page_Size=R.GITS_BASER_PAGE_SIZE_64K,
    )


def itt_of(dev: int) -> int:
    return ITT + 0x1000 * (dev % ITT_DEVICES)


class Builder:
    """Lines of one case plus what the probes need (IDs used, vCPUs, table layout)."""

    def __init__(self, rng: random.Random, case_id: int, kind: str, vcpus: int) -> None:
        self.rng, self.case_id, self.kind, self.vcpus = rng, case_id, kind, vcpus
        self.lines = [O.vm_line(case_id, vcpus)]
        self.pairs: set[tuple[int, int]] = set()
        self.devs: set[int] = set()
        self.indirect = False

    def add(self, name: str, *args: int | bytes) -> None:
        self.lines.append(O.line(name, *args))

    def rd64(self, vcpu: int, off: int, value: int) -> None:
        """A 64-bit redistributor register as the two 32-bit halves the uaccess ABI takes."""
        self.add("rd_w", vcpu, off, value & 0xFFFF_FFFF)
        self.add("rd_w", vcpu, off + 4, value >> 32)

    def case(self) -> O.Case:
        return O.Case(self.case_id, self.kind, self.lines)

    # --- the guest driver's set-up ---------------------------------------------------------
    def lpi_tables(self, enable: list[int], nlpis: int = 64) -> None:
        prop = R.GICR_PROPBASER_LAYOUT.encode(
            IDbits=IDBITS - 1,
            PA=PROP >> 12,
            Shareability=R.GIC_BASER_InnerShareable,
            InnerCache=R.GIC_BASER_CACHE_RaWb,
        )
        cfg = bytes(
            (0xA0 if self.rng.random() < 0.9 else 0x40)
            | R.LPI_PROP_GROUP1
            | (self.rng.random() < 0.9)
            for _ in range(nlpis)
        )
        self.add("memw", PROP, cfg)
        for v in range(self.vcpus):
            self.rd64(v, R.GICR_PROPBASER, prop)
            pend = R.GICR_PENDBASER_LAYOUT.encode(
                PA=(PEND + 0x1_0000 * v) >> 16,
                Shareability=R.GIC_BASER_InnerShareable,
                InnerCache=R.GIC_BASER_CACHE_RaWb,
            )
            self.rd64(v, R.GICR_PENDBASER, pend)
        for v in enable:
            self.add("rd_w", v, R.GICR_CTLR, R.GICR_CTLR_ENABLE_LPIS)

    def its_tables(self, indirect: bool = False, enable: bool = True) -> None:
        self.indirect = indirect
        self.add("its_w", R.GITS_CBASER, cbaser())
        self.add("its_w", R.GITS_BASER, baser(DEVT, indirect=int(indirect)))
        self.add("its_w", R.GITS_BASER + 8, baser(COLLT))
        if enable:
            self.add("its_w", R.GITS_CTLR, R.GITS_CTLR_ENABLE)

    def standard(self, nlpis: int = 64) -> None:
        """LPIs on every vCPU (or most), the ITS tables, the ITS enabled."""
        enable = [v for v in range(self.vcpus) if self.rng.random() < 0.9] or [0]
        self.lpi_tables(enable, nlpis)
        self.its_tables(indirect=self.rng.random() < 0.2)

    # --- commands ---------------------------------------------------------------------------
    def cmd(self, name: str, **fields: int) -> None:
        if name == "MAPD" and fields.get("V"):
            dev = fields["DeviceID"]
            if self.indirect and dev < 8192 * 4:
                # the L2 page a guest allocates before mapping (one per 8192 DeviceIDs)
                l1 = dev // 8192
                l2 = DEVT_L2 + 0x1_0000 * (l1 % 3)
                self.add("memw", DEVT + 8 * l1, ((1 << 63) | l2).to_bytes(8, "little"))
        self.add("cmd", encode_command(name, **fields))

    def rand_dev(self) -> int:
        r = self.rng.random()
        if r < 0.9:
            return self.rng.randrange(4)
        return self.rng.choice((5, 63, 0x1FFF, 0x2000, 0xFFFF, 0x1_0000, 0xFFFF_FFFF))

    def rand_ev(self, bits: int = 3) -> int:
        r = self.rng.random()
        if r < 0.9:
            return self.rng.randrange(1 << bits)
        return self.rng.choice(((1 << bits), 0xFF, 0xFFFF, 0x1_0000, 0xFFFF_FFFF))

    def rand_icid(self) -> int:
        return (
            self.rng.randrange(4)
            if self.rng.random() < 0.93
            else self.rng.choice((0xFF, 0x1FFF, 0x2000, 0xFFFF))
        )

    def rand_vcpu(self) -> int:
        return (
            self.rng.randrange(self.vcpus)
            if self.rng.random() < 0.93
            else self.rng.choice((self.vcpus, 0xFF, 0xFFFF))
        )

    def rand_intid(self) -> int:
        r = self.rng.random()
        if r < 0.92:
            return LPI + self.rng.randrange(64)
        return self.rng.choice(
            (LPI - 1, 1023, 0, LPI + 8191, (1 << IDBITS) - 1, 1 << IDBITS, 0xFFFF_FFFF)
        )

    def random_command(self) -> None:
        rng = self.rng
        name = rng.choices(
            (
                "MAPD",
                "MAPC",
                "MAPTI",
                "MAPI",
                "MOVI",
                "DISCARD",
                "INT",
                "CLEAR",
                "INV",
                "INVALL",
                "MOVALL",
                "SYNC",
                "UNKNOWN",
            ),
            weights=(10, 8, 20, 4, 8, 6, 8, 5, 5, 3, 4, 2, 1),
        )[0]
        if name == "UNKNOWN":
            self.add(
                "cmd", bytes((rng.choice((0x00, 0x0E, 0x20, 0x22, 0xFF)),)) + rng.randbytes(31)
            )
            return
        dev, ev = self.rand_dev(), self.rand_ev()
        if name == "MAPD":
            valid = int(rng.random() < 0.85)
            bits = (
                rng.choice((1, 2, 3, 3, 3, 4, 8)) if rng.random() < 0.97 else rng.choice((17, 32))
            )
            itt = (
                itt_of(dev)
                if rng.random() < 0.95
                else rng.choice((0, O.MEM_BASE + O.MEM_SIZE, 0x100))
            )
            self.cmd("MAPD", DeviceID=dev, Size=bits - 1, ITT_addr=itt >> 8, V=valid)
            self.devs.add(dev)
        elif name == "MAPC":
            self.cmd(
                "MAPC", ICID=self.rand_icid(), RDbase=self.rand_vcpu(), V=int(rng.random() < 0.85)
            )
        elif name == "MAPTI":
            self.cmd(
                "MAPTI", DeviceID=dev, EventID=ev, pINTID=self.rand_intid(), ICID=self.rand_icid()
            )
            self.pairs.add((dev, ev))
        elif name == "MAPI":
            ev = rng.choice((ev, LPI + rng.randrange(8)))
            self.cmd("MAPI", DeviceID=dev, EventID=ev, ICID=self.rand_icid())
            self.pairs.add((dev, ev))
        elif name in ("MOVI",):
            self.cmd("MOVI", DeviceID=dev, EventID=ev, ICID=self.rand_icid())
        elif name in ("DISCARD", "INT", "CLEAR", "INV"):
            self.cmd(name, DeviceID=dev, EventID=ev)
        elif name == "INVALL":
            self.cmd("INVALL", ICID=self.rand_icid())
        elif name == "MOVALL":
            self.cmd("MOVALL", RDbase=self.rand_vcpu(), RDbase2=self.rand_vcpu())
        else:
            self.cmd("SYNC", RDbase=self.rand_vcpu())

    def mapped_world(self, ndev: int = 3, nev: int = 4) -> None:
        """A well-formed mapping: collections on each vCPU, devices, events (valid IDs)."""
        for c in range(min(4, self.vcpus + 1)):
            self.cmd("MAPC", ICID=c, RDbase=c % self.vcpus, V=1)
        for d in range(ndev):
            self.cmd("MAPD", DeviceID=d, Size=2, ITT_addr=itt_of(d) >> 8, V=1)
            self.devs.add(d)
            for e in range(nev):
                self.cmd("MAPTI", DeviceID=d, EventID=e, pINTID=LPI + 8 * d + e, ICID=(d + e) % 4)
                self.pairs.add((d, e))

    # --- probes: what the kernel shows of the state --------------------------------------------
    def probe_msis(self, extra: int = 2) -> None:
        pairs = sorted(self.pairs)
        for _ in range(extra):
            pairs.append((self.rand_dev(), self.rand_ev()))
        for d, e in pairs:
            self.add("msi", d, e)

    def probe_tables(self) -> None:
        self.add("its_r", R.GITS_CREADR)
        self.add("save")
        self.add("memr", DEVT, 0x1_0000)
        if self.indirect:
            for i in range(3):
                self.add("memr", DEVT_L2 + 0x1_0000 * i, 0x200)
        self.add("memr", COLLT, 0x100)
        for d in sorted(self.devs):
            if d < 0x1_0000:
                self.add("memr", itt_of(d), 0x800)
        self.add("savep")
        for v in range(self.vcpus):
            self.add("memr", PEND + 0x1_0000 * v, PEND_BYTES)

"""The kernel selftest vgic_lpi_stress as a trace (tools/testing/selftests/kvm/arm64/).

Guest set-up (every vCPU enables LPIs with a shared property table and its own
pending table; vCPU 0 programs the ITS), the host's pre-set property bytes
(0xA3), the command stream (MAPC per vCPU, MAPD + MAPTI device-major, INVALL
per collection), then one injector per device looping iterations x events.
The selftest's interleaving of device threads is the scheduler's; the trace
takes them round-robin, one MSI per device per turn (documented choice).
"""

import numpy as np

from gictools import regs as R
from gictools.cmdlayout import encode_command
from gictools.errors import ConfigError
from gictools.trace.writer import TraceWriter

ITS_BASE = 0x0800_0000  # selftest gic.h GITS base; doorbell 0x0801_0040
SZ_64K = 0x10000
RAM = (0x4000_0000, 0x1_0000_0000)
ROUTINGS = ("as-measured", "fixed")
BLOCK = 65536


def layout(vcpus, devices):
    """Guest-physical carve-out in the selftest's order (vgic_lpi_stress.c)."""
    base = RAM[0]
    lay = {
        "device_table": base,
        "collection_table": base + SZ_64K,
        "cmdq": base + 2 * SZ_64K,
        "itt_base": base + 3 * SZ_64K,
    }
    lay["prop_table"] = lay["itt_base"] + devices * SZ_64K
    lay["pend_base"] = lay["prop_table"] + SZ_64K
    return lay


# The selftest's two versions, as workload options (docs/latency-model.md "Selftest 2024
# and 2025"). 2024: the measured tables' test, MAPC's RDbase encoded as 0 so every
# collection on vCPU 0 (fixed by a24f7afce048), and the guest never unmasks IRQs, so its
# LPIs stay pending. 2025: the MAPC target fixed, and the guest takes and acknowledges
# the LPIs (d5e6310a0d99 "Actually enable IRQs in vgic_lpi_stress", Oct 2025).
SELFTESTS = {
    "2024": {"routing": "as-measured", "acked": False},
    "2025": {"routing": "fixed", "acked": True},
}
DEFAULT_SELFTEST = "2025"


def selftest_routing(selftest, routing=None):
    """(routing, acked) of a selftest version; an explicit routing overrides its default
    (the 2024 test with the MAPC fix backported, say)."""
    if selftest not in SELFTESTS:
        raise ConfigError(f"--selftest {selftest!r}: one of {', '.join(SELFTESTS)}")
    s = SELFTESTS[selftest]
    return (routing or s["routing"]), s["acked"]


def check_args(vcpus, devices, events, iterations, routing):
    if not 1 <= vcpus <= 512:
        raise ConfigError(f"-v {vcpus}: the selftest's guest GIC library takes 1..512 vCPUs")
    if not 1 <= devices <= 8192:
        raise ConfigError(
            f"-d {devices}: DeviceIDs must fit the 64 KiB flat device table (1..8192)"
        )
    if not 1 <= events <= 65536:
        raise ConfigError(f"-e {events}: EventIDs must be below 2^16 (1..65536)")
    if devices * events > (1 << 16) - R.LPI_BASE_INTID:
        raise ConfigError(
            f"-d {devices} x -e {events} = {devices * events} LPIs; at most 57344 "
            "(INTIDs 8192..65535)"
        )
    if iterations < 0:
        raise ConfigError(f"-i {iterations}: iterations must be >= 0")
    if routing not in ROUTINGS:
        raise ConfigError(f"--routing {routing!r}: one of {', '.join(ROUTINGS)}")


def setup_records(vcpus, devices, events, routing):
    """(kind, args) of the set-up, as the selftest's guest and host perform it."""
    lay = layout(vcpus, devices)
    recs = []
    prop = R.GICR_PROPBASER_LAYOUT.encode(
        IDbits=15, PA=lay["prop_table"] >> 12, Shareability=R.GIC_BASER_InnerShareable, InnerCache=7
    )
    recs.append(("mem", (lay["prop_table"], bytes([0xA3]) * (devices * events))))
    for c in range(vcpus):
        pend = R.GICR_PENDBASER_LAYOUT.encode(
            PA=(lay["pend_base"] + c * SZ_64K) >> 16,
            Shareability=R.GIC_BASER_InnerShareable,
            InnerCache=7,
        )
        recs.append(("reg", ("redist", c, R.GICR_PROPBASER, 8, prop, True)))
        recs.append(("reg", ("redist", c, R.GICR_PENDBASER, 8, pend, True)))
        recs.append(("reg", ("redist", c, R.GICR_CTLR, 4, R.GICR_CTLR_ENABLE_LPIS, True)))

    def baser(pa):
        return R.GITS_BASER_LAYOUT.encode(
            Valid=1,
            PA=pa >> 16,
            Shareability=1,
            InnerCache=7,
            Page_Size=R.GITS_BASER_PAGE_SIZE_64K,
        )

    coll = baser(lay["collection_table"])
    dev = baser(lay["device_table"])
    cbaser = R.GITS_CBASER_LAYOUT.encode(
        Valid=1, PA=lay["cmdq"] >> 12, Size=15, Shareability=1, InnerCache=7
    )
    recs.append(("reg", ("its", 0, R.GITS_BASER + 8, 8, coll, True)))
    recs.append(("reg", ("its", 0, R.GITS_BASER, 8, dev, True)))
    recs.append(("reg", ("its", 0, R.GITS_CBASER, 8, cbaser, True)))
    recs.append(("reg", ("its", 0, R.GITS_CTLR, 4, R.GITS_CTLR_ENABLE, True)))
    for c in range(vcpus):
        # Before Oct 2025 the selftest encoded RDbase as (vcpu >> 16): every collection -> vCPU 0
        rdbase = c if routing == "fixed" else 0
        recs.append(("command", encode_command("MAPC", ICID=c, RDbase=rdbase, V=1)))
    for d in range(devices):
        recs.append(
            (
                "command",
                encode_command(
                    "MAPD", DeviceID=d, Size=15, ITT_addr=(lay["itt_base"] + d * SZ_64K) >> 8, V=1
                ),
            )
        )
        for e in range(events):
            n = d * events + e
            recs.append(
                (
                    "command",
                    encode_command(
                        "MAPTI", DeviceID=d, EventID=e, pINTID=R.LPI_BASE_INTID + n, ICID=n % vcpus
                    ),
                )
            )
    for c in range(vcpus):
        recs.append(("command", encode_command("INVALL", ICID=c)))
    return recs


def msi_blocks(devices, events, iterations, t0=0, period_ns=1000):
    """Round-robin injection order: turn k = (iteration, event); within it, devices 0..d-1."""
    total = devices * events * iterations
    for start in range(0, total, BLOCK):
        idx = np.arange(start, min(start + BLOCK, total), dtype=np.int64)
        dev = (idx % devices).astype(np.uint32)
        ev = ((idx // devices) % events).astype(np.uint32)
        ts = (t0 + idx * period_ns).astype(np.uint64)
        yield ts, dev, ev, dev.copy()


def generate(
    path,
    vcpus=1,
    devices=1,
    events=16,
    iterations=1000,
    routing="as-measured",
    period_ns=1000,
    progress=None,
    selftest=None,
):
    """Write the workload to path (or a binary stream); returns the number of MSIs.
    progress(n) is called with the MSIs written since the last call."""
    check_args(vcpus, devices, events, iterations, routing)
    vm = {"vcpus": vcpus, "kernel": "6.8", "memory": [list(RAM)], "itses": [{"base": ITS_BASE}]}
    meta = {
        "generator": "lpi-stress",
        "vcpus": vcpus,
        "devices": devices,
        "events": events,
        "iterations": iterations,
        "routing": routing,
        **({"selftest": selftest} if selftest else {}),
        "period_ns": period_ns,
        "interleave": "round-robin",
    }
    with TraceWriter(path, vm=vm, source="gictools gen lpi-stress", metadata=meta) as w:
        for kind, args in setup_records(vcpus, devices, events, routing):
            getattr(w, kind)(*args) if kind != "command" else w.command(0, args)
        t0 = 0
        for ts, dev, ev, inj in msi_blocks(devices, events, iterations, t0, period_ns):
            w.msi_block(0, ts, dev, ev, inj)
            if progress is not None:
                progress(len(ts))
    return devices * events * iterations

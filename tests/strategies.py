"""Hypothesis strategies shared by the property tests (imported as `strategies`).

IDs lean on the small live values the set-ups map, with the boundary values KVM
checks (16-bit DeviceID/EventID limits, 8192, all-ones) mixed in.
"""

from hypothesis import settings
from hypothesis import strategies as st

from gictools.cmdlayout import encode_command

POLICIES = ["none", "lru-v6.8", "usage-v2", "per-its-v6.10"]
KERNELS = ["6.6", "6.8", "6.9", "7.0"]


def weighted(*pairs):
    """one_of with integer weights (hypothesis' one_of treats branches alike)."""
    table = [strat for w, strat in pairs for _ in range(w)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


live_dev, live_ev = st.integers(0, 1), st.integers(0, 1)
dev = st.one_of(
    live_dev, live_dev, live_dev, st.sampled_from([3, 8191, 8192, 0xFFFF, 0x10000, 0xFFFF_FFFF])
)
ev = st.one_of(live_ev, live_ev, live_ev, st.sampled_from([5, 15, 16, 0xFFFF, 0x10000]))
icid = st.integers(0, 3) | st.sampled_from([8191, 8192, 0xFFFF])
intid = st.integers(8190, 8200) | st.sampled_from([0, 16383, 65535, 65536, 0xFFFF_FFFF])
rdbase = st.integers(0, 3) | st.sampled_from([0xFFFF_FFFF])

# one raw 32-byte ITS command, every opcode KVM handles plus garbage
command = st.one_of(
    st.builds(
        lambda d, b, v: encode_command("MAPD", DeviceID=d, Size=b, ITT_addr=0x410000 + d % 8, V=v),
        dev,
        st.integers(0, 31),
        st.integers(0, 1),
    ),
    st.builds(
        lambda c, r, v: encode_command("MAPC", ICID=c, RDbase=r, V=v),
        icid,
        rdbase,
        st.integers(0, 1),
    ),
    st.builds(
        lambda d, e, i, c: encode_command("MAPTI", DeviceID=d, EventID=e, pINTID=i, ICID=c),
        dev,
        ev,
        intid,
        icid,
    ),
    st.builds(lambda d, e, c: encode_command("MAPI", DeviceID=d, EventID=e, ICID=c), dev, ev, icid),
    st.builds(lambda d, e, c: encode_command("MOVI", DeviceID=d, EventID=e, ICID=c), dev, ev, icid),
    *[
        st.builds(lambda d, e, n=n: encode_command(n, DeviceID=d, EventID=e), dev, ev)
        for n in ("DISCARD", "CLEAR", "INT", "INV")
    ],
    st.builds(lambda c: encode_command("INVALL", ICID=c), icid),
    st.builds(lambda a, b: encode_command("MOVALL", RDbase=a, RDbase2=b), rdbase, rdbase),
    st.just(encode_command("SYNC")),
    st.binary(min_size=32, max_size=32),
)


def msi_runs(max_dev=3, max_ev=6, max_size=60):
    """One block's (DeviceID, EventID) pairs, mostly live, some unmapped."""
    return st.lists(
        st.tuples(st.integers(0, max_dev), st.integers(0, max_ev)), min_size=1, max_size=max_size
    )


@st.composite
def key_streams(draw, its_count=3, max_keys=48, max_len=400):
    """A policy-level stream: blocks of key indices (into a pool of (ITS, DeviceID, EventID)),
    some keys unfillable (slow path fails), invalidations between blocks. The pool is larger
    than small caches so capacity overflows."""
    n = draw(st.integers(1, max_keys))
    pool = draw(
        st.lists(
            st.tuples(
                st.integers(0, its_count - 1),
                st.integers(0, 3) | st.sampled_from([0xFFFF, 0x10000, 0xFFFF_FFFF]),
                st.integers(0, 40),
            ),
            min_size=n,
            max_size=n,
            unique=True,
        )
    )
    nofill = draw(st.sets(st.integers(0, n - 1), max_size=max(1, n // 4)))
    # a skewed index stream: hot keys and cold ones, so hits, misses and evictions mix
    idx = st.integers(0, n - 1) | st.integers(0, min(n - 1, 5))
    # sweeps cycle over more keys than a 16-entry cache holds (the lpi-stress thrash shape)
    sweep = st.builds(lambda k, r: list(range(k)) * r, st.integers(1, n), st.integers(1, 4))
    ops = draw(
        st.lists(
            st.one_of(
                st.tuples(
                    st.just("block"),
                    st.integers(0, its_count - 1),
                    st.lists(idx, max_size=max_len) | sweep,
                ),
                st.just(("invalidate",)),
            ),
            min_size=1,
            max_size=6,
        )
    )
    return pool, nofill, ops


# --- corrupted ITS tables ------------------------------------------------------------------------
WORD_MUTATIONS = ("flip", "id", "outside", "random", "zero")


def table_starts(its) -> list:
    """GPAs of the device table, the collection table and every ITT of its."""
    starts = [its.baser[0] & 0xFFFF_FFFF_0000, its.baser[1] & 0xFFFF_FFFF_0000]
    return starts + [d.itt_addr for d in its.devices.values()]


def mutate_word(data, word: int, kind: str) -> int:
    """A table entry changed as a hostile image would: one bit flipped, a new low 16-bit
    ID, a valid L1 entry pointing outside memory, random bits, or zero."""
    if kind == "flip":
        return word ^ 1 << data.draw(st.integers(0, 63))
    if kind == "id":
        return (word & ~0xFFFF) | data.draw(st.integers(0, 0xFFFF))
    if kind == "outside":
        return (1 << 63) | (data.draw(st.integers(0, 0xFFF)) << 16) | (word & 0x1F)
    if kind == "random":
        return data.draw(st.integers(0, (1 << 64) - 1))
    assert kind == "zero", kind
    return 0


def examples(weight: float) -> int:
    """max_examples for a test `weight` times as cheap per example as the typical property
    test (below 1: costlier), under the loaded profile (tests/conftest.py)."""
    return max(1, round(settings.default.max_examples * weight))

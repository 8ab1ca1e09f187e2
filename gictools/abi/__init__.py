"""KVM ITS save/restore ABI, one row per revision (its_table_abi_versions[] in vgic-its.c).

Model state <-> guest memory only; files are gictools.image's business.
"""

from collections.abc import Callable
from typing import NamedTuple


class Abi(NamedTuple):
    cte_esz: int
    dte_esz: int
    ite_esz: int
    save: Callable  # save(its) -> 0 / -errno
    restore: Callable  # restore(its, find=None) -> 0 / -errno; find: inspect mode
    commit: Callable  # commit(its): set BASER Entry_Size fields for this revision


def _v0_save(its):
    from gictools.abi.v0 import save_tables_v0

    return save_tables_v0(its)


def _v0_restore(its, find=None):
    from gictools.abi.v0 import restore_tables_v0

    return restore_tables_v0(its, find)


def _v0_commit(its):
    """vgic_its_commit_v0: Entry_Size = 8 bytes in both BASERs."""
    from gictools.regs import GITS_BASER_LAYOUT

    f = GITS_BASER_LAYOUT["Entry_Size"]
    its.baser[0] = f.put(its.baser[0], 8 - 1)
    its.baser[1] = f.put(its.baser[1], 8 - 1)


ABIS = (Abi(8, 8, 8, _v0_save, _v0_restore, _v0_commit),)

"""KVM versions whose vGIC/ITS behaviour differs, as one table of feature thresholds.

The VM's `kernel=` setting picks a row; each flag cites where the kernel changed.
"""

from typing import NamedTuple

from gictools.errors import KernelVersionError

DEFAULT_KERNEL = "7.0"
KNOWN_KERNELS = ("6.1", "6.6", "6.7", "6.8", "6.9", "6.10", "6.13", "7.0")


class KernelProfile(NamedTuple):
    name: str
    version: tuple
    rdbase_is_vcpu_id: bool  # v6.7: collection_to_vcpu uses kvm_get_vcpu_by_id
    lpi_creation_order: bool  # <= v6.8: LPI list in creation order; v6.9+: xarray by INTID
    copy_lpi_list: bool  # <= v6.9: vgic_copy_lpi_list callers; v6.10 walks the xarray
    copy_lpi_list_max: int  # v6.9: the xarray walk stops at INTID 65535
    movall_filters_source: bool  # <= v6.9: MOVALL moves only vCPU1's LPIs
    zero_on_unmap: bool  # v6.13 (+stable): MAPD V=0 zeroes the DTE, DISCARD the ITE
    restore_checks_dte_size: bool  # 2026 (7.x): restore rejects DTE Size+1 > 16
    default_cache: str  # the translation cache that kernel has


def parse_version(name: str) -> tuple:
    try:
        parts = tuple(int(p) for p in str(name).split(".")[:2])
    except ValueError:
        raise KernelVersionError(
            f"kernel version {name!r} is not of the form X.Y", version=name
        ) from None
    if len(parts) != 2:
        raise KernelVersionError(f"kernel version {name!r} is not of the form X.Y", version=name)
    if parts < (6, 1):
        raise KernelVersionError(f"kernel {name} is not modelled (oldest: 6.1)", version=name)
    return parts


def profile(name: str = DEFAULT_KERNEL) -> KernelProfile:
    v = parse_version(name)
    return KernelProfile(
        name=f"{v[0]}.{v[1]}",
        version=v,
        rdbase_is_vcpu_id=v >= (6, 7),
        lpi_creation_order=v < (6, 9),
        copy_lpi_list=v < (6, 10),
        copy_lpi_list_max=65535 if v == (6, 9) else (1 << 32) - 1,
        movall_filters_source=v < (6, 10),
        zero_on_unmap=v >= (6, 13),
        restore_checks_dte_size=v >= (7, 0),
        default_cache="lru-v6.8" if v < (6, 10) else "per-its-v6.10",
    )

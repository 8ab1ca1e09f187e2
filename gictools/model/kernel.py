"""KVM versions whose vGIC/ITS behaviour differs, as one table of feature thresholds.

The VM's `kernel=` setting picks a row; each flag cites where the kernel changed.
A version is "X.Y" (the mainline release, X.Y.0) or "X.Y.Z" (a stable point release):
fixes that were backported to stable branches switch on at the first point release of
each branch that carries them (BACKPORTS), as well as at their mainline release.
"""

from typing import NamedTuple

from gictools.errors import KernelVersionError

DEFAULT_KERNEL = "7.1"
# The mainline releases where some modelled behaviour changes (offered by the CLI's completion);
# any X.Y or X.Y.Z from OLDEST on is accepted.
MILESTONES = ("6.1", "6.7", "6.8", "6.9", "6.10", "6.13", "7.0", "7.1")
OLDEST = (6, 1)

# Behaviours backported to stable branches: (mainline release, {branch: first point release}).
BACKPORTS = {
    # "KVM: arm64: vgic-its: Clear DTE when MAPD unmaps a device" (e9649129d33d) and "Clear ITE
    # when DISCARD frees an ITE" (7602ffd1d5e8), v6.13. Stable, Dec 2024: 6.6.64 and 6.12.2
    # (the linux-stable-rc pushes of 3 Dec 2024 for 6.6.64-rc1 / 6.12.2-rc1 carry both),
    # 6.1.120 and 5.15.174 (the 12 Dec 2024 review batch; 5.15 is older than the model).
    "zero_on_unmap": ((6, 13, 0), {(6, 1): 120, (6, 6): 64, (6, 12): 2}),
    # "KVM: arm64: vgic-its: Reject restored DTE with out-of-range num_eventid_bits"
    # (9ce754ed8e7a), mainline 7.1; stable 6.1.175, 6.6.142, 6.12.92, 6.18.34, 7.0.11
    # (fixed versions of CVE-2026-64106, osv.dev).
    "restore_checks_dte_size": (
        (7, 1, 0),
        {(6, 1): 175, (6, 6): 142, (6, 12): 92, (6, 18): 34, (7, 0): 11},
    ),
}


class KernelProfile(NamedTuple):
    name: str
    version: tuple  # (X, Y, Z)
    rdbase_is_vcpu_id: bool  # v6.7: collection_to_vcpu uses kvm_get_vcpu_by_id
    lpi_creation_order: bool  # <= v6.8: LPI list in creation order; v6.9+: xarray by INTID
    copy_lpi_list: bool  # <= v6.9: vgic_copy_lpi_list callers; v6.10 walks the xarray
    copy_lpi_list_max: int  # v6.9: the xarray walk stops at INTID 65535
    movall_filters_source: bool  # <= v6.9: MOVALL moves only vCPU1's LPIs
    zero_on_unmap: bool  # v6.13 (+stable, BACKPORTS): MAPD V=0 zeroes the DTE, DISCARD the ITE
    restore_checks_dte_size: bool  # v7.1 (+stable, BACKPORTS): restore rejects Size+1 > 16
    default_cache: str  # the translation cache that kernel has (the policies' mainline ranges)


def parse_version(name: str) -> tuple:
    """(X, Y, Z) from "X.Y" (Z = 0, the mainline release) or "X.Y.Z"."""
    parts = str(name).split(".")
    try:
        nums = tuple(int(p) for p in parts)
    except ValueError:
        nums = ()
    if len(nums) not in (2, 3) or min(nums) < 0:
        raise KernelVersionError(
            f"kernel version {name!r} is not of the form X.Y or X.Y.Z", version=name
        )
    if nums[:2] < OLDEST:
        raise KernelVersionError(
            f"kernel {name} is not modelled (oldest: {OLDEST[0]}.{OLDEST[1]})", version=name
        )
    return nums + (0,) * (3 - len(nums))


def has(feature: str, v: tuple) -> bool:
    """Does kernel v carry a backported behaviour: mainline release or a stable point release."""
    mainline, stable = BACKPORTS[feature]
    first = stable.get(v[:2])
    return v >= mainline or (first is not None and v[2] >= first)


def profile(name: str = DEFAULT_KERNEL) -> KernelProfile:
    from gictools.model.cache import default_policy  # the policies' ranges decide

    v = parse_version(name)
    xy = v[:2]
    return KernelProfile(
        name=".".join(map(str, v if v[2] else xy)),
        version=v,
        rdbase_is_vcpu_id=xy >= (6, 7),
        lpi_creation_order=xy < (6, 9),
        copy_lpi_list=xy < (6, 10),
        copy_lpi_list_max=65535 if xy == (6, 9) else (1 << 32) - 1,
        movall_filters_source=xy < (6, 10),
        zero_on_unmap=has("zero_on_unmap", v),
        restore_checks_dte_size=has("restore_checks_dte_size", v),
        default_cache=default_policy(v),
    )

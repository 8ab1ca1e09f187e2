"""gictools: a model of KVM/arm64's virtual GICv3 ITS that records, replays and saves."""

# Kept parseable by old Pythons: this check must run before any module using 3.11 syntax.
import sys

if sys.version_info < (3, 11):  # noqa: UP036 (the point: older Pythons end here)
    sys.exit(
        f"gictools needs Python >= 3.11 (this is Python {sys.version_info[0]}.{sys.version_info[1]})"
    )

__version__ = "0.1.0"
__all__ = ["VM", "__version__"]


def __getattr__(name):
    # VM on first use: `gictools --help` must not pay for importing the model.
    if name == "VM":
        from gictools.model.vm import VM

        return VM
    raise AttributeError(f"module 'gictools' has no attribute {name!r}")

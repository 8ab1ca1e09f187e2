"""gictools: a model of KVM/arm64's virtual GICv3 ITS that records, replays and saves."""

# Kept parseable by old Pythons, 2.7 included (no f-strings, no annotations): this check
# must run before any module using 3.11 syntax (tests/cli/test_old_python.py).
import sys

if sys.version_info < (3, 11):  # noqa: UP036 (the point: older Pythons end here)
    sys.exit("gictools needs Python >= 3.11 (this is Python %d.%d)" % sys.version_info[:2])  # noqa: UP031

__version__ = "0.1.0"
__all__ = ["VM", "__version__"]


def __getattr__(name):
    # VM on first use: `gictools --help` must not pay for importing the model.
    if name == "VM":
        from gictools.model.vm import VM

        return VM
    raise AttributeError("module 'gictools' has no attribute %r" % (name,))  # noqa: UP031

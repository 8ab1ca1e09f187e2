"""gictools: a model of KVM/arm64's virtual GICv3 ITS that records, replays and saves."""

__version__ = "0.1.0"

from gictools.model.vm import VM

__all__ = ["VM", "__version__"]

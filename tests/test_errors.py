"""The error tree (gictools.errors): user errors under one base, guest faults outside it."""

import pytest

from gictools import VM
from gictools.errors import (
    ConfigError,
    GictoolsError,
    GuestFault,
    KernelVersionError,
    OutputError,
)
from gictools.model.memory import GuestMemory


@pytest.mark.parametrize("version", ["5.4", "6", "six.eight", "6.x"])
def test_bad_kernel_version_is_its_own_class(version):
    with pytest.raises(KernelVersionError) as ei:
        VM(1, kernel=version)
    assert ei.value.version == version
    assert isinstance(ei.value, ConfigError) and isinstance(ei.value, GictoolsError)


@pytest.mark.parametrize(
    "slots", [[(1, 0x1000)], [(0, 0)], [(0, 0x2000), (0x1000, 0x1000)], [(0, 1 << 53)]]
)
def test_bad_ram_slots_are_config_errors_not_kernel_errors(slots):
    with pytest.raises(ConfigError) as ei:
        GuestMemory(slots)
    assert not isinstance(ei.value, KernelVersionError)
    assert isinstance(ei.value, ValueError)  # API callers catching ValueError keep working


def test_guest_fault_is_not_a_user_error():
    assert not issubclass(GuestFault, GictoolsError)
    with pytest.raises(GuestFault) as ei:
        GuestMemory([(0x1000, 0x1000)]).read(0x4000, 4)
    assert ei.value.gpa == 0x4000 and ei.value.size == 4


def test_output_error_names_the_path():
    e = OutputError("is a directory", path="out/")
    assert str(e) == "out/: is a directory" and isinstance(e, GictoolsError)

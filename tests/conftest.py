"""Shared fixtures: a VM with one enabled ITS and a Guest driving it."""

import pytest

from gictools import VM
from gictools.guest import Guest


class Setup:
    def __init__(self, vcpus=2, kernel="7.0", cache=None, vcpu_ids=None, itses=1, **guest_kw):
        self.vm = VM(vcpus, kernel=kernel, cache=cache, vcpu_ids=vcpu_ids)
        self.itses = [self.vm.add_its() for _ in range(itses)]
        self.its = self.itses[0]
        self.guests = [
            Guest(self.vm, its, alloc_base=0x4100_0000 + 0x0100_0000 * i, **guest_kw)
            for i, its in enumerate(self.itses)
        ]
        self.g = self.guests[0]
        for g in self.guests:
            g.enable_lpis()

    def mapped(self, dev=1, events=4, icid=0, vcpu=0, intid0=8192, bits=4, g=None):
        """MAPC icid->vcpu, MAPD dev, MAPTI events with enabled config; returns the Guest."""
        g = g or self.g
        assert g.mapc(icid, vcpu) == 0
        assert g.mapd(dev, bits) == 0
        for e in range(events):
            g.set_lpi_config(intid0 + e)
            assert g.mapti(dev, e, intid0 + e, icid) == 0
        return g


@pytest.fixture
def make():
    return Setup

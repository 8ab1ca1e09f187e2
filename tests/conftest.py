"""Shared fixtures (a VM with one enabled ITS and a Guest driving it) and the Hypothesis
profiles, for every test under tests/.

Profiles: "dev" (the default: quick, for running tests while working) and "ci" (thorough,
for CI and nightly runs): HYPOTHESIS_PROFILE=ci python -m pytest. A test sets only what is its
own: health checks, and a relative weight for a test much cheaper or costlier per example than
the rest (strategies.examples). deadline is off in both: the machine running the suite may be
shared, and a per-example time limit would then fail at random.
"""

import os
import subprocess

import pytest
from hypothesis import settings

from gictools import VM
from gictools.guest import Guest

# max_examples per property test (times its weight); "ci" is the level the suite ran at before
# the profiles existed (~52 s for the whole suite on 2 cores), "dev" a fifth of it
settings.register_profile("dev", max_examples=20, deadline=None)
settings.register_profile("ci", max_examples=100, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


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


@pytest.fixture
def small_tmpfs(tmp_path):
    """small_tmpfs("48k"): a directory under tmp_path on a tmpfs of that size, for the tests
    of a full disk (unmounted after the test); the test is skipped where mounting is not
    allowed (not root)."""
    mounted = []

    def mount(size: str):
        d = tmp_path / f"small-{size}"
        d.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True
        )
        if r.returncode:
            pytest.skip("cannot mount a tmpfs here (not root)")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", str(d)], check=True)

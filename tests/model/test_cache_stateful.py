"""All four cache policies in lock-step under one random guest: ITS commands, single MSIs,
MSI blocks, EnableLPIs / GITS_CTLR toggles, property-table writes and full save/restore
migrations. Delivery must agree with the uncached slow path (policy none) and every cached
translation must equal the slow path, except for KVM's retarget quirk (see
test_its_properties): once that happened, pending latches may legitimately differ."""

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from model_checks import build, check_cache_matches_slow_path, check_invariants, migrate
from strategies import KERNELS, POLICIES, command, dev, ev, examples, msi_runs

from gictools import regs as R
from gictools.model.block import inject_block

its_index = st.integers(0, 1)


def _ret(err):
    return 1 if err == 0 else (0 if err > 0 else err)


class PoliciesInLockStep(RuleBasedStateMachine):
    @initialize(kernel=st.sampled_from(KERNELS))
    def setup(self, kernel):
        self.runs = [build(p, kernel) for p in POLICIES]  # (vm, guests); [0] is none
        self.quirk = False
        self.blocks = self.block_fallbacks = 0

    def _agree(self, per_policy):
        """per_policy: for each policy, the (ret, error, intid, vcpu) of each MSI."""
        ref = per_policy[0]
        for (vm, _), got in zip(self.runs[1:], per_policy[1:]):
            assert len(got) == len(ref)
            for a, b in zip(ref, got):
                if a != b:  # only a hit on a retargeted LPI whose vCPU has LPIs off
                    assert b[0] == 1 and a[1] == -R.EBUSY and not vm.redists[b[3]].lpis_enabled
                    self.quirk = True

    @rule(i=its_index, raw=command)
    def guest_command(self, i, raw):
        # through the guest's queue: written to memory, CWRITER advanced (queued while the
        # ITS is disabled, run when it is enabled again)
        errs = {gs[i].command(raw) for _, gs in self.runs}
        assert len(errs) == 1

    @rule(i=its_index, d=dev, e=ev)
    def msi(self, i, d, e):
        res = [vm.signal_msi(gs[i].its, d, e) for vm, gs in self.runs]
        self._agree([[(r.ret, r.error, r.intid, r.vcpu)] for r in res])

    @rule(i=its_index, run=msi_runs(max_dev=3, max_ev=5, max_size=40))
    def msi_block(self, i, run):
        dev_ = np.array([d for d, _ in run], dtype=np.uint32)
        ev_ = np.array([e for _, e in run], dtype=np.uint32)
        per_policy = []
        for vm, gs in self.runs:
            r = inject_block(vm, gs[i].its, dev_, ev_)
            self.blocks += 1
            if r is None:
                self.block_fallbacks += 1
                out = [vm.signal_msi(gs[i].its, d, e) for d, e in run]
                per_policy.append([(x.ret, x.error, x.intid, x.vcpu) for x in out])
                continue
            per_policy.append(
                [
                    (_ret(err), err, None if n < 0 else n, None if v < 0 else v)
                    for err, n, v in zip(r.error.tolist(), r.intid.tolist(), r.vcpu.tolist())
                ]
            )
        self._agree(per_policy)

    @rule(vcpu=st.integers(0, 2), on=st.booleans())
    def enable_lpis(self, vcpu, on):
        for vm, _ in self.runs:
            vm.write_redist_reg(vcpu, "GICR_CTLR", int(on))

    @rule(i=its_index, on=st.booleans())
    def its_ctlr(self, i, on):
        for _, gs in self.runs:
            gs[i].its.mmio_write(R.GITS_CTLR, 4, int(on))

    @rule(intid=st.integers(8192, 8200), prop=st.integers(0, 255))
    def lpi_config(self, intid, prop):
        for vm, gs in self.runs:
            vm.memory.write(gs[0].prop_table + intid - 8192, bytes((prop,)))

    @rule()
    def save_and_restore(self):
        outcomes = []
        for n, (vm, gs) in enumerate(self.runs):
            res, vm2 = migrate(vm, gs)
            outcomes.append(res)
            self.runs[n] = (vm2, gs)
        assert all(o == outcomes[0] for o in outcomes), outcomes

    @invariant()
    def caches_match_slow_path_and_states_agree(self):
        if not hasattr(self, "runs"):
            return
        for vm, _ in self.runs:
            check_invariants(vm)
            check_cache_matches_slow_path(vm)
        if not self.quirk:
            states = [vm.state() for vm, _ in self.runs]
            assert all(s == states[0] for s in states)


# each example runs 30 steps on four VMs: ~15x a typical property test's example
PoliciesInLockStep.TestCase.settings = settings(
    max_examples=examples(0.2),
    stateful_step_count=30,
    suppress_health_check=[HealthCheck.too_slow],
)
test_policies_in_lock_step = PoliciesInLockStep.TestCase

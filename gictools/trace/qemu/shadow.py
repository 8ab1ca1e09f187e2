"""A shadow of the ITS under KVM's rules (devices, ITEs, collections): what INV/INVALL
resolve to, and where QEMU's behaviour differs from KVM's."""

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Shadow:
    """The ITS state under KVM's rules, to resolve INV/INVALL and see where QEMU differs."""

    devices: dict = field(default_factory=dict)  # DeviceID -> {EventID: [INTID, ICID]}
    collections: dict = field(default_factory=dict)  # ICID -> RDbase
    qemu_pending: Counter = field(default_factory=Counter)  # INTID -> triggers not yet acked
    last_target: int = 0  # RDbase of the last command's collection (SYNC)
    last_mapc_icid: int = 0

    refs: Counter = field(default_factory=Counter)  # INTID -> live ITEs mapping it
    icid_refs: Counter = field(default_factory=Counter)  # ICID -> live ITEs in it
    targets: dict = field(default_factory=dict)  # INTID -> ICID of its latest ITE

    def ite(self, dev, ev):
        return self.devices.get(dev, {}).get(ev)

    def add_ite(self, dev, ev, intid, icid):
        self.devices[dev][ev] = [intid, icid]
        self.refs[intid] += 1
        self.icid_refs[icid] += 1
        self.targets[intid] = icid

    def drop_ite(self, ite):
        intid, icid = ite
        self.refs[intid] -= 1
        self.icid_refs[icid] -= 1

    def move_ite(self, ite, icid):
        self.icid_refs[ite[1]] -= 1
        self.icid_refs[icid] += 1
        ite[1] = self.targets[ite[0]] = icid

    def target_of(self, intid):
        """The RDbase the LPI targets under KVM's rules, or None (no LPI, unmapped)."""
        if self.refs[intid] <= 0:
            return None
        return self.collections.get(self.targets.get(intid))

    def lpis(self):
        """{INTID: target RDbase or None} of every live ITE."""
        return {
            intid: self.collections.get(icid)
            for d in self.devices.values()
            for intid, icid in d.values()
        }

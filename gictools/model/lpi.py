"""LPI objects: one per INTID per VM, shared by every ITE that maps it (vgic_add_lpi)."""


class LPI:
    __slots__ = ("intid", "priority", "enabled", "pending", "target", "refs", "queued")

    def __init__(self, intid, target):
        self.intid = intid
        self.priority = 0
        self.enabled = False
        self.pending = False
        self.target = target  # vCPU index, or None (collection unmapped)
        self.refs = 0  # ITEs mapping this INTID, + 1 while on an ap_list; the object dies at 0
        self.queued = None  # irq->vcpu: the vCPU index whose ap_list holds it, or None

    def __repr__(self):
        return (
            f"LPI({self.intid}, prio={self.priority:#x}, en={self.enabled}, "
            f"pend={self.pending}, target={self.target})"
        )

    def state(self):
        return (self.intid, self.priority, self.enabled, self.pending, self.target, self.refs)

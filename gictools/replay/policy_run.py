"""One cache policy's model VM inside a replay, with its report and output sink."""

from gictools.cmdlayout import decode_command
from gictools.model.memory import DEFAULT_RAM
from gictools.model.vm import VM
from gictools.replay.records import command_fields
from gictools.replay.report import PolicyReport


class PolicyRun:
    """One policy's VM and bookkeeping."""

    def __init__(self, header, policy, kernel, index):
        vmh = header["vm"]
        self.kernel = kernel or vmh.get("kernel") or None
        kw = {
            "vcpu_ids": vmh.get("vcpu_ids"),
            "memory": [tuple(s) for s in vmh["memory"]] if vmh.get("memory") else DEFAULT_RAM,
        }
        if self.kernel:
            kw["kernel"] = self.kernel
        self._build = lambda: VM(vmh["vcpus"], cache=None if policy == "default" else policy, **kw)
        self.vm = self._build()
        self.invalidations_before = 0  # those of the VMs a migration replaced
        for its in vmh.get("itses", []):
            self.vm.add_its(its["base"])
        self._itses = vmh.get("itses", [])
        self.queued = []  # the row columns of commands taken from a queue (_queued)
        self._hook_queues()
        self.policy = self.vm.cache_policy
        self.index = index  # cache_policy dictionary index
        self.report = PolicyReport(self.policy)
        self.sink = None
        self.costs_ns = None  # a contention-free latency model's ns by outcome code
        self.costs: list = []  # the same as a list (the per-event path)
        self.last_cmd_error = None
        self.last_msi = None  # (ret, error, intid, vcpu)
        self.last_ctrl = None

    def migrate(self):
        """CTRL migrate: a fresh VM from the header that carries the guest memory only."""
        memory = self.vm.memory
        self.invalidations_before = self.invalidations()
        self.vm = self._build()
        self.vm.memory = memory
        for its in self._itses:
            self.vm.add_its(its["base"])
        self._hook_queues()
        return 0

    def invalidations(self) -> int:
        """The policy's invalidations so far: each cache object's own count (one per VM, or
        one per ITS), the replaced VMs' included."""
        return self.invalidations_before + sum(c.invalidations for c in self.vm.caches())

    def _hook_queues(self):
        """Commands an ITS takes from its command queue (a GITS_CWRITER or GITS_CTLR write,
        vgic_its_process_commands) are counted as COMMAND records are, and get their rows."""
        for i, its in enumerate(self.vm.itses):
            its.command_hook = lambda raw, err, i=i: self._queued(i, raw, err)

    def _queued(self, its_i, raw, err):
        """One command the ITS executed from its queue: counted; its row's columns wait in
        self.queued for the register write's row (records.reg_record writes them after it,
        with that record's seq, time and injector)."""
        rep = self.report
        rep.commands += 1
        if self.sink is not None and self.sink.keep:
            name, fields = command_fields(self, self.vm.itses[its_i], its_i, raw, err)
            self.queued.append(fields)
        else:
            name = decode_command(raw)[0]
        rep.command_counts[name] += 1
        if err:
            rep.command_errors[err] += 1

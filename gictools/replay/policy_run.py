"""One cache policy's model VM inside a replay, with its report and output sink."""

from gictools.model.memory import DEFAULT_RAM
from gictools.model.vm import VM
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
        for its in vmh.get("itses", []):
            self.vm.add_its(its["base"])
        self._itses = vmh.get("itses", [])
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
        self.vm = self._build()
        self.vm.memory = memory
        for its in self._itses:
            self.vm.add_its(its["base"])
        self._hook_queues()
        return 0

    def _hook_queues(self):
        """Commands an ITS takes from its command queue (a GITS_CWRITER or GITS_CTLR write)
        counted as COMMAND records are (in the counts; they have no Parquet rows yet)."""
        for its in self.vm.itses:
            its.command_hook = self._queued

    def _queued(self, raw, err):
        from gictools.cmdlayout import decode_command

        rep = self.report
        rep.commands += 1
        rep.command_counts[decode_command(raw)[0]] += 1
        if err:
            rep.command_errors[err] += 1

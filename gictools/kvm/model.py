"""Run an op script on gictools' model (public API only) and answer as kvmcheck.c does."""

from __future__ import annotations

from gictools import regs as R
from gictools.errors import ConfigError
from gictools.kvm import ops as O
from gictools.model.its import ITS
from gictools.model.memory import GuestFault
from gictools.model.vm import VM


class ModelRunner:
    """The model's side of one script: a VM per `vm` line, on kernel `kernel`."""

    def __init__(self, kernel: str) -> None:
        self.kernel = kernel
        self.vm: VM | None = None
        self.its: ITS | None = None
        self.its_base = 0

    def answer(self, text: str) -> str:
        try:
            op = O.parse(text)
        except O.OpError as e:
            return f"!bad {e}"
        if op.name == "vm":
            return self._vm(text.split()[1], op)
        if self.vm is None:
            return "!novm"
        if self.its is None and op.name in O.ITS_OPS:
            return "!noits"
        try:
            return self._op(op)
        except (ValueError, ConfigError) as e:  # the model refuses what KVM answers
            return f"!model {type(e).__name__}: {e}"

    def run(self, lines: list[str]) -> list[str]:
        return [self.answer(ln) for ln in lines]

    def _vm(self, case: str, op: O.Op) -> str:
        _, n, base, size, _dist, _redist, its_base, flags = op.args
        self.vm = self.its = None
        self.its_base = its_base
        if not 1 <= n <= O.MAX_VCPUS:
            return f"vm {case} !nvcpus {-R.EINVAL}"
        if not size or size > O.MAX_MEM or (size | base) & 0xFFFF:
            return f"vm {case} !memsize {-R.EINVAL}"
        vm = VM(n, kernel=self.kernel, memory=[(base, size)], initialized=not flags & O.VM_NO_INIT)
        if not flags & O.VM_NO_ITS:
            self.its = vm.add_its(base=its_base)
        self.vm = vm
        return f"vm {case} 0"

    def _op(self, op: O.Op) -> str:
        vm, its = self.vm, self.its
        assert vm is not None
        a = op.args
        name = op.name
        if name == "msi":  # to the ITS's doorbell, as kvmcheck.c (an ITS there or not)
            if a[0] > 0xFFFF_FFFF or a[1] > 0xFFFF_FFFF:
                return "!bad IDs are 32 bits"
            return str(vm.signal_msi(0, a[0], a[1], address=self.its_base + R.GITS_TRANSLATER).ret)
        if name == "savep":
            return str(vm.save_pending_tables())
        if name in ("rd_w", "rd_r"):
            return self._redist(name, a)
        if name in ("dist_w", "dist_r"):
            return self._dist(name, a)
        if name == "memw":
            assert op.data is not None
            try:
                vm.memory.write(a[0], op.data)
            except GuestFault:
                return str(-R.EFAULT)
            return "0"
        if name == "memr":
            if a[1] > O.MAX_MEMR or a[1] & 7 or a[0] & 7:
                return f"!bad memr needs 8-byte aligned GPA and LEN <= {O.MAX_MEMR:#x}"
            try:
                return O.memr_answer(vm.memory.read(a[0], a[1]))
            except GuestFault:
                return str(-R.EFAULT)
        assert its is not None  # ITS_OPS on a VM without one answered "!noits" above
        if name == "its_w":
            return str(its.write_reg(a[0], a[1]))
        if name == "its_r":
            return self._its_read(a[0])
        if name == "cmd":
            assert op.data is not None
            return self._cmd(op.data)
        if name == "save":
            return str(its.save_tables())
        if name == "restore":
            return str(its.restore_tables())
        if name == "itsreset":
            return str(its.reset())
        raise AssertionError(name)  # parse() knows only the ops above

    def _redist(self, name: str, a: tuple[int, ...]) -> str:
        vm = self.vm
        assert vm is not None
        if a[0] >= vm.nr_vcpus:
            return f"!bad no vCPU {a[0]:x}"
        if a[1] > 0xFFFF_FFFF or (name == "rd_w" and a[2] > 0xFFFF_FFFF):
            return "!bad offset or value beyond 32 bits"
        if name == "rd_w":
            vm.write_redist_reg(a[0], a[1], a[2], 4)
            return "0"
        return f"={vm.read_redist_reg(a[0], a[1], 4):x}"

    def _its_read(self, off: int) -> str:
        assert self.its is not None
        try:
            return f"={self.its.read_reg(off):x}"
        except ValueError:
            # vgic_its_attr_regs_access: misaligned -EINVAL, no register -ENXIO
            align = 4 if off < 8 or off >= R.GITS_IDREGS_BASE else 8
            return str(-R.EINVAL if off & (align - 1) else -R.ENXIO)

    def _dist(self, name: str, a: tuple[int, ...]) -> str:
        """The distributor, where the model has one (VM.read_dist_reg / write_dist_reg)."""
        vm = self.vm
        fn = getattr(vm, "write_dist_reg" if name == "dist_w" else "read_dist_reg", None)
        if fn is None:
            return "!unmodelled distributor"
        if name == "dist_w":
            r = fn(a[0], a[1], 4)
            return str(r if isinstance(r, int) else 0)
        return f"={fn(a[0], 4):x}"

    def _cmd(self, raw: bytes) -> str:
        """As kvmcheck.c's do_cmd: the slot at CBASER's address + CWRITER, then CWRITER += 32."""
        its, vm = self.its, self.vm
        assert its is not None and vm is not None
        cbaser = its.read_reg(O.GITS_CBASER)
        cwriter = its.read_reg(O.GITS_CWRITER)
        size = ((cbaser & 0xFF) + 1) * 4096
        try:
            vm.memory.write((cbaser & O.CBASER_PA_MASK) + cwriter, raw)
        except GuestFault:
            return str(-R.EFAULT)
        err = its.write_reg(O.GITS_CWRITER, (cwriter + 32) % size)
        if err:
            return str(err)
        return f"={its.read_reg(O.GITS_CREADR):x}"


def run_cases(cases: list[O.Case], kernel: str) -> list[list[str]]:
    """The model's answers, case by case."""
    runner = ModelRunner(kernel)
    return [runner.run(c.lines) for c in cases]

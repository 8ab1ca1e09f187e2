"""ITS table save/restore, ABI revision 0 (vgic_its_save_tables_v0 / vgic_its_restore_tables_v0).

Save: device tables and ITTs, then the collection table; no roll-back,
entries written before an error stay written. Restore: collection table, then the
device table (flat or two-level) and each device's ITT, with KVM's checks and errnos.

Model choice where KVM gives no usable answer (one comment form: "MODEL CHOICE"):
* An ITE whose collection was freed by MAPC V=0 (collection None), on a kernel without
  the 2026 stable fix "Don't dereference a NULL collection on ITT save" (before 6.1.191 /
  6.12.113; mainline release not known here): vgic_its_save_ite dereferences NULL (a host
  crash). The model fails the save with -EINVAL at that ITE; ITEs and DTEs written before
  it stay written, as for any save error. With the fix (kernel.save_zeroes_orphan_ite) a
  zero entry is written for it and the save goes on, as KVM.

As KVM (no model choice):
* A failing restore is not rolled back (vgic_its_restore_tables_v0): a collection table
  error frees every collection of the ITS, a device table error every device and then
  every collection, including the ones that were live before the call (each freed device
  invalidates the translation cache); pending bits the walk consumed stay cleared in guest
  memory and the LPIs of freed ITEs are released. (Only inspect mode puts the VM back.)
* A restored DTE whose DeviceID is already live is appended behind it
  (vgic_its_alloc_device: list_add_tail) and find_its_device keeps returning the old one,
  so the old mapping stays in effect (ITS.shadowed) -- until a save: list_sort with
  vgic_its_device_cmp reverses devices of equal DeviceID (ITS.sort_device_list), so the
  restored duplicate then wins, and the live device's DTE is the one left in memory.
* Objects count against the VM's budget (gictools.model.budget): a restore that would
  exceed it fails with -ENOMEM, handled as any failing restore.
"""

from gictools import entries as E
from gictools import regs as R
from gictools.abi.walk import TableReader, scan_its_table
from gictools.model.its import (
    COLLECTION_NOT_MAPPED,
    SZ_64K,
    Collection,
    baser_table_base,
)
from gictools.model.memory import GuestFault

_B = R.GITS_BASER_LAYOUT
_VALID = 1 << _B["Valid"].lo
_INDIRECT = 1 << _B["Indirect"].lo
_SIZE = _B["Size"]
_ESZ = 8


def _table_bytes(baser: int) -> int:
    return (_SIZE.get(baser) + 1) * SZ_64K


# --- save ------------------------------------------------------------------------------------


class _Writer:
    """Buffers consecutive 8-byte entries into one memory write; on a fault, falls back to
    one write per entry so that exactly the entries before the faulting one are written."""

    __slots__ = ("mem", "start", "buf")

    def __init__(self, mem):
        self.mem, self.start, self.buf = mem, None, bytearray()

    def put(self, gpa: int, word: int) -> int:
        if self.start is not None and gpa == self.start + len(self.buf):
            self.buf += word.to_bytes(8, "little")
            return 0
        err = self.flush()
        self.start = gpa
        self.buf = bytearray(word.to_bytes(8, "little"))
        return err

    def flush(self) -> int:
        if self.start is None:
            return 0
        start, buf = self.start, self.buf
        self.start, self.buf = None, bytearray()
        try:
            self.mem.write(start, buf)
            return 0
        except GuestFault:
            pass
        for i in range(0, len(buf), 8):
            try:
                self.mem.write(start + i, buf[i : i + 8])
            except GuestFault:
                return -R.EFAULT
        return 0


def _save_itt(its, dev, w: _Writer) -> int:
    """vgic_its_save_itt: ITEs by ascending EventID, next = EventID distance (0 for the last)."""
    ites = dev.ites
    eids = sorted(ites)
    base = dev.itt_addr
    pack = E.pack_ite
    next_max = E.ITE_NEXT_MAX
    n = len(eids)
    zero_orphans = its.vm.kernel.save_zeroes_orphan_ite
    for i, eid in enumerate(eids):
        ite = ites[eid]
        coll = ite.collection
        if coll is None:
            if zero_orphans:
                # vgic_its_save_ite, stable 6.1.191 / 6.12.113: a zero entry (read back as
                # invalid); the ITE before it still points at it (compute_next_eventid_offset)
                err = w.put(base + eid * _ESZ, 0)
                if err:
                    return err
                continue
            # MODEL CHOICE (kernels without that fix: NULL dereference in vgic_its_save_ite):
            # -EINVAL.
            err = w.flush()
            return err or -R.EINVAL
        # compute_next_eventid_offset: min_t(u32, next_offset, VITS_ITE_MAX_EVENTID_OFFSET)
        nxt = eids[i + 1] - eid if i + 1 < n else 0
        if nxt > next_max:
            nxt = next_max
        err = w.put(base + eid * _ESZ, pack(nxt, ite.lpi.intid, coll.icid))
        if err:
            return err
    return 0


def _save_device_tables(its) -> int:
    """vgic_its_save_device_tables."""
    baser = its.baser[0]
    if not baser & _VALID:
        return 0
    w = _Writer(its.vm.memory)
    # list_sort(vgic_its_device_cmp) first, whatever happens next: duplicates of a DeviceID
    # come out reversed, so the DTE written last at their address is the live one's.
    devs = its.sort_device_list()
    skip = its.vm.kernel.save_skips_unreachable
    check_id = its.check_id  # read when the kernel reads it: an ITT written may be a table
    n = len(devs)
    for i, dev in enumerate(devs):
        device_id = dev.device_id
        err = w.flush()
        if err:
            return err
        gpa = check_id(0, device_id)
        if gpa is None:
            if skip:  # stable 6.12.112: "Don't fail a save that userspace must be able to issue"
                continue
            return -R.EINVAL
        err = _save_itt(its, dev, w) or w.flush()
        if err:
            return err
        # compute_next_devid_offset: the next device on the list (stable 6.12.112: the next
        # one check_id can place), min_t(u32, distance, VITS_DTE_MAX_DEVID_OFFSET)
        nxt = 0
        for j in range(i + 1, n):
            if not skip or check_id(0, devs[j].device_id) is not None:
                nxt = min(devs[j].device_id - device_id, E.DTE_NEXT_MAX)
                break
        err = w.put(gpa, E.pack_dte(nxt, dev.itt_addr, dev.num_eventid_bits - 1))
        if err:
            return err
    return w.flush()


def _save_collection_table(its) -> int:
    """vgic_its_save_collection_table: CTEs packed in list order + one zero terminator."""
    baser = its.baser[1]
    if not baser & _VALID:
        return 0
    gpa = baser_table_base(baser)
    max_size = _table_bytes(baser)
    filled = 0
    w = _Writer(its.vm.memory)
    for coll in its.collections.values():
        err = w.put(gpa, E.pack_cte(coll.target & E.CTE_RDBASE_MASK, coll.icid))
        if err:
            return err
        gpa += _ESZ
        filled += _ESZ
    if filled != max_size:
        err = w.put(gpa, 0)
        if err:
            return err
    return w.flush()


def save_tables_v0(its) -> int:
    """KVM_DEV_ARM_ITS_SAVE_TABLES, ABI rev 0: 0 or -errno (-EINVAL, -EFAULT)."""
    err = _save_device_tables(its)
    if err:
        return err
    return _save_collection_table(its)


# --- restore -----------------------------------------------------------------------------------


class _Undo:
    """What a restore may change, so that a failing one can put it back (see module doc)."""

    def __init__(self, its):
        vm = its.vm
        self.its, self.vm, self.mem = its, vm, vm.memory
        self.devices = dict(its.devices)
        self.shadowed = list(its.shadowed)
        self.counts = (vm.nr_devices, vm.nr_ites)
        self.collections = dict(its.collections)
        self.lpis = dict(vm.lpis)
        self.refs = [(lpi, lpi.refs) for lpi in vm.lpis.values()]
        self.mem.begin_journal()

    def close(self):
        """Stop journaling; the journal of writes made so far."""
        return self.mem.end_journal()

    def rollback(self):
        journal = self.close()
        its, vm = self.its, self.vm
        its.devices.clear()
        its.devices.update(self.devices)
        its.shadowed[:] = self.shadowed
        vm.nr_devices, vm.nr_ites = self.counts
        its.collections.clear()
        its.collections.update(self.collections)
        vm.lpis.clear()
        vm.lpis.update(self.lpis)
        for lpi, refs in self.refs:
            lpi.refs = refs
        self.mem.undo(journal)


class Inspection:
    """The restore walk in inspect mode: every problem, not only the first.

    The walk is restore's own (same order, same checks, same state changes); where restore
    would stop with an error, the problem is recorded (address, errno, what) and the walk
    goes on as if that entry had been skipped, so the first problem is exactly the error
    restore returns. Entries met are listed; the tables' address ranges are kept so that
    overlaps can be noted (legal: the kernel selftest's ITTs overlap other tables).
    """

    MAX_PROBLEMS = 200  # then the walk stops (a hostile image can hold millions)
    MAX_LINES = 20_000  # entry lines listed; the rest are counted

    def __init__(self):
        self.lines = []
        self.problems = []  # (errno, gpa, what)
        self.notes = []
        self.ranges = []  # (start, end, what)
        self.unlisted = 0

    @property
    def full(self) -> bool:
        return len(self.problems) >= self.MAX_PROBLEMS

    def entry(self, text: str):
        if len(self.lines) < self.MAX_LINES:
            self.lines.append(text)
        else:
            self.unlisted += 1

    def problem(self, err: int, gpa, what: str):
        where = "?" if gpa is None else f"{gpa:#x}"
        self.problems.append((err, gpa, what))
        self.entry(f"    MALFORMED at {where}: {what} ({R.error_name(err)})")

    def table(self, start: int, size: int, what: str):
        self.ranges.append((start, start + size, what))

    def overlap_notes(self) -> list:
        """One note per table range that overlaps an earlier-starting one (sorted sweep)."""
        out = []
        reach = None  # (end, what) of the range reaching furthest so far
        for start, end, what in sorted(self.ranges):
            if reach is not None and start < reach[0]:
                out.append(
                    f"note: {what} [{start:#x}, {end:#x}) overlaps {reach[1]} "
                    f"(allowed; restore reads each table as it is)"
                )
            if reach is None or end > reach[0]:
                reach = (end, f"{what} (to {end:#x})")
        return out


def _restore_collection_table(its, reader, find=None) -> int:
    """vgic_its_restore_collection_table + vgic_its_restore_cte."""
    baser = its.baser[1]
    if not baser & _VALID:
        return 0
    vm = its.vm
    gpa = baser_table_base(baser)
    max_size = _table_bytes(baser)
    if find is not None:
        find.table(gpa, max_size, "collection table")
    read = 0
    while read < max_size:
        word = reader.read_entry(gpa, _ESZ)
        if word is None:
            reader.fault_gpa = None
            if find is not None:
                find.problem(-R.EFAULT, gpa, "collection table entry outside guest RAM")
            return -R.EFAULT
        valid, target, icid = E.unpack_cte(word)
        if not valid:
            return 0  # the terminator
        err, what = 0, ""
        if target != COLLECTION_NOT_MAPPED and vm.vcpu_from_rdbase(target) is None:
            err, what = -R.EINVAL, f"CTE ICID {icid}: target {target} names no vCPU"
        elif icid in its.collections:
            err, what = -R.EEXIST, f"CTE ICID {icid} duplicated"
        elif its.check_id(1, icid) is None:
            err, what = -R.EINVAL, f"CTE ICID {icid} outside the collection table"
        if err:
            if find is None:
                return err
            find.problem(err, gpa, what)
            if find.full:
                return err
        else:
            its.collections[icid] = Collection(icid, target)
            if find is not None:
                tgt = "unmapped" if target == COLLECTION_NOT_MAPPED else f"RDbase {target}"
                find.entry(f"    {gpa:#x} CTE ICID {icid} -> {tgt}")
        gpa += _ESZ
        read += _ESZ
    return 0


def _restore_itt(its, dev, reader, find=None) -> int:
    """vgic_its_restore_itt + vgic_its_restore_ite."""
    vm = its.vm
    collections = its.collections
    nbits = dev.num_eventid_bits
    limit = 1 << nbits
    base = dev.itt_addr
    unpack = E.unpack_ite
    add_lpi = vm.add_lpi
    add_ite = its.add_ite

    def bad(err, event_id, nxt, what):
        """Restore stops here; inspect records it and walks on as if the ITE were skipped."""
        if find is None:
            return err
        find.problem(
            err, base + event_id * _ESZ, f"ITE {event_id} of device {dev.device_id}: {what}"
        )
        if err == -R.ENOMEM or find.full:
            return err  # nothing further can be allocated: stop the walk
        return nxt if nxt and event_id + nxt < limit else 0

    def restore_ite(event_id, word):
        nxt, intid, icid = unpack(word)
        if not intid:
            return 1  # invalid entry: step one
        if intid < R.LPI_BASE_INTID:
            return bad(-R.EINVAL, event_id, nxt, f"pINTID {intid} < 8192")
        if event_id + nxt >= limit:
            return bad(-R.EINVAL, event_id, nxt, f"next {nxt} points past the ITT")
        coll = collections.get(icid)
        if coll is None:
            return bad(-R.EINVAL, event_id, nxt, f"ICID {icid} is not a collection")
        if not its.check_event_id(dev, event_id):
            return bad(-R.EINVAL, event_id, nxt, "ITE outside guest RAM (check_event_id)")
        if not its.can_alloc_ite():
            return bad(-R.ENOMEM, event_id, nxt, "ITE budget spent")  # vgic_its_alloc_ite
        err, lpi = add_lpi(intid, its.collection_vcpu(coll))
        if err:
            return bad(err, event_id, nxt, f"LPI {intid} cannot be created")
        add_ite(dev, event_id, coll, lpi)
        if find is not None:
            find.entry(
                f"      {base + event_id * _ESZ:#x} ITE {event_id}: INTID {intid}, "
                f"ICID {icid}, next {nxt}"
            )
        return nxt

    ret = scan_its_table(reader, base, limit * _ESZ, _ESZ, 0, restore_ite)
    if ret == -R.EFAULT and find is not None and reader.fault_gpa is not None:
        find.problem(ret, reader.fault_gpa, f"ITT of device {dev.device_id} outside guest RAM")
    reader.fault_gpa = None
    return 0 if ret > 0 else ret


def _restore_device_tables(its, reader, find=None) -> int:
    """vgic_its_restore_device_tables (+ handle_l1_dte, vgic_its_restore_dte)."""
    baser = its.baser[0]
    if not baser & _VALID:
        return 0
    check_size = its.vm.kernel.restore_checks_dte_size
    dte_gpa = [0]  # where the DTE being restored sits (for inspect's messages)

    def restore_dte(device_id, word):
        valid, nxt, itt_addr, nbits = E.unpack_dte(word)
        if not valid:
            return 1
        err, what = 0, ""
        if check_size and nbits > R.VITS_TYPER_IDBITS:
            err, what = -R.EINVAL, f"Size {nbits - 1}: {nbits} EventID bits > 16"  # 7.1
        elif its.check_id(0, device_id) is None:
            err, what = -R.EINVAL, "DeviceID fails check_id"
        if not err:
            dev = its.alloc_device(device_id, itt_addr, nbits)  # behind a live duplicate
            if dev is None:
                err, what = -R.ENOMEM, "device budget spent"
        if err:
            if find is None:
                return err
            find.problem(err, dte_gpa[0], f"DTE {device_id}: {what}")
            return err if err == -R.ENOMEM or find.full else nxt
        if find is not None:
            find.entry(
                f"    {dte_gpa[0]:#x} DTE {device_id}: ITT {itt_addr:#x}, "
                f"{nbits} EventID bits, next {nxt}"
            )
            find.table(itt_addr, min((1 << nbits) * _ESZ, 1 << 62), f"ITT of device {device_id}")
        err = _restore_itt(its, dev, reader, find)
        if err:
            if find is None or err == -R.ENOMEM or find.full:
                return err  # the caller frees the device list (vgic_its_free_device_list)
        return nxt

    def scan_l2(base, size, first_id):
        def fn(device_id, word):
            dte_gpa[0] = base + (device_id - first_id) * _ESZ
            return restore_dte(device_id, word)

        ret = scan_its_table(reader, base, size, _ESZ, first_id, fn)
        if ret == -R.EFAULT and find is not None and reader.fault_gpa is not None:
            find.problem(ret, reader.fault_gpa, "device table entry outside guest RAM")
        reader.fault_gpa = None
        return ret

    base = baser_table_base(baser)
    size = _table_bytes(baser)
    if baser & _INDIRECT:
        l2_entries = SZ_64K // _ESZ
        if find is not None:
            find.table(base, size, "level-1 device table")

        def handle_l1_dte(index, word):
            valid, l2 = E.unpack_l1e(word)
            if not valid:
                return 1
            if find is not None:
                find.entry(f"    {base + 8 * index:#x} L1[{index}] -> L2 {l2:#x}")
                find.table(l2, SZ_64K, f"L2 device table {index}")
            ret = scan_l2(l2, SZ_64K, index * l2_entries)
            if ret < 0 and find is not None and ret != -R.ENOMEM and not find.full:
                return 1  # inspect: the next L1 entry
            return ret

        ret = scan_its_table(reader, base, size, _ESZ, 0, handle_l1_dte)
        if ret == -R.EFAULT and find is not None and reader.fault_gpa is not None:
            find.problem(ret, reader.fault_gpa, "level-1 device table entry outside guest RAM")
        reader.fault_gpa = None
    else:
        if find is not None:
            find.table(base, size, "device table")
        ret = scan_l2(base, size, 0)
    return 0 if ret > 0 else ret


def restore_tables_v0(its, find: Inspection | None = None) -> int:
    """KVM_DEV_ARM_ITS_RESTORE_TABLES, ABI rev 0: 0 or -errno (-EINVAL, -EEXIST, -EFAULT,
    -ENOMEM).

    A failure is handled as vgic_its_restore_tables_v0 does (see module doc): a collection
    table error frees every collection of the ITS; a device table error frees every device
    and then every collection, live ones included; guest memory keeps what the walk wrote.
    With find (inspect mode) the walk records every problem in it, goes on past each, and
    the VM is always left as before; the return value is then the first problem's errno
    (what restore returns) or 0.
    """
    if find is None:
        reader = TableReader(its.vm.memory)
        # vgic_its_restore_collection_table: on error, vgic_its_free_collection_list
        ret = _restore_collection_table(its, reader)
        if ret:
            its.free_collections()
            return ret
        ret = _restore_device_tables(its, reader)
        if ret:
            # vgic_its_restore_device_tables: vgic_its_free_device_list (each device
            # invalidates the cache); then vgic_its_restore_tables_v0 frees the collections
            its.free_devices()
            its.free_collections()
        return ret
    undo = _Undo(its)
    try:
        reader = TableReader(its.vm.memory)
        ret = _restore_collection_table(its, reader, find)
        if not find.full and ret != -R.ENOMEM:
            _restore_device_tables(its, reader, find)
    finally:
        undo.rollback()
    return find.problems[0][0] if find.problems else 0


__all__ = ["save_tables_v0", "restore_tables_v0", "Inspection"]

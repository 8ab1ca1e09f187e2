"""ITS command handlers, one per command, dispatched through HANDLERS {opcode: handler}.

Each handler is vgic_its_cmd_handle_<cmd>: handler(its, dw0, dw1, dw2, dw3) -> int,
0 / E_ITS_* / -errno. Checks run in the kernel's order, the first failure
decides the code, and nothing is changed before it (unless noted).
"""

from gictools import regs as R
from gictools.model.its import COLLECTION_NOT_MAPPED, Collection
from gictools.model.memory import GuestFault

_DEVID_SHIFT, _DEVID_MASK = R.DEVICEID_SHIFT, R.DEVICEID_MASK
_EVID_MASK = R.EVENTID_MASK


def _ids(dw0, dw1):
    return (dw0 >> _DEVID_SHIFT) & _DEVID_MASK, dw1 & _EVID_MASK


def _zero_entry(its, gpa):
    """v6.13+: write an 8-byte zero entry (vgic_its_write_entry_lock); 0 or -EFAULT."""
    try:
        its.vm.memory.write_u64(gpa, 0)
    except GuestFault:
        return -R.EFAULT
    return 0


def cmd_mapd(its, dw0, dw1, dw2, dw3):
    device_id = (dw0 >> _DEVID_SHIFT) & _DEVID_MASK
    valid = dw2 >> R.VALID_SHIFT & 1
    num_eventid_bits = (dw1 & R.SIZE_MASK) + 1
    itt_addr = ((dw2 >> R.ITT_ADDR_SHIFT) & R.ITT_ADDR_MASK) << 8
    gpa = its.check_id(0, device_id)
    if gpa is None:  # checked for V=0 too
        return R.E_ITS_MAPD_DEVICE_OOR
    if valid and num_eventid_bits > R.VITS_TYPER_IDBITS:
        return R.E_ITS_MAPD_ITTSIZE_OOR
    dev = its.devices.get(device_id)
    if dev is not None:
        # UNPREDICTABLE (MAPD on a mapped device): KVM frees the ITTEs and remaps.
        its.free_device(dev)
    if not valid:
        return _zero_entry(its, gpa) if its.vm.kernel.zero_on_unmap else 0
    if its.alloc_device(device_id, itt_addr, num_eventid_bits) is None:
        return -R.ENOMEM
    return 0


def cmd_mapc(its, dw0, dw1, dw2, dw3):
    vm = its.vm
    icid = dw2 & R.ICID_MASK
    target = (dw2 >> R.RDBASE_SHIFT) & R.RDBASE_MASK
    valid = dw2 >> R.VALID_SHIFT & 1
    if not vm.kernel.rdbase_is_vcpu_id and target >= vm.nr_vcpus:
        return R.E_ITS_MAPC_PROCNUM_OOR  # <= v6.6: checked for V=0 too
    if not valid:
        its.free_collection(icid)
        its.invalidate_cache()
        return 0
    vcpu = vm.vcpu_from_rdbase(target)
    if vcpu is None:
        return R.E_ITS_MAPC_PROCNUM_OOR
    coll = its.collections.get(icid)
    if coll is None:
        if its.check_id(1, icid) is None:
            return R.E_ITS_MAPC_COLLECTION_OOR
        its.collections[icid] = Collection(icid, target)
        return 0
    coll.target = target
    # update_affinity_collection: retarget every LPI this ITS maps through it; no invalidation
    for dev in its.all_devices():
        for ite in dev.ites.values():
            if ite.collection is coll:
                ite.lpi.target = vcpu
    return 0


def _mapti(its, dw0, dw1, dw2, intid):
    vm = its.vm
    device_id, event_id = _ids(dw0, dw1)
    icid = dw2 & R.ICID_MASK
    dev = its.devices.get(device_id)
    if dev is None:
        return R.E_ITS_MAPTI_UNMAPPED_DEVICE
    if not its.check_event_id(dev, event_id):
        return R.E_ITS_MAPTI_ID_OOR
    if not R.LPI_BASE_INTID <= intid < vm.max_lpis_propbaser():
        return R.E_ITS_MAPTI_PHYSICALID_OOR
    if event_id in dev.ites:
        return 0  # existing (DeviceID, EventID): no change
    coll = its.collections.get(icid)
    new_coll = None
    if coll is None:
        if its.check_id(1, icid) is None:
            return R.E_ITS_MAPC_COLLECTION_OOR
        coll = new_coll = its.collections[icid] = Collection(icid, COLLECTION_NOT_MAPPED)
    # vgic_its_cmd_handle_mapi: the ITE is allocated before the LPI
    err = 0 if its.can_alloc_ite() else -R.ENOMEM
    if not err:
        err, lpi = vm.add_lpi(intid, its.collection_vcpu(coll))
    if err:
        if new_coll is not None:
            del its.collections[icid]
        return err
    its.add_ite(dev, event_id, coll, lpi)
    return 0


def cmd_mapti(its, dw0, dw1, dw2, dw3):
    return _mapti(its, dw0, dw1, dw2, (dw1 >> R.PINTID_SHIFT) & R.PINTID_MASK)


def cmd_mapi(its, dw0, dw1, dw2, dw3):
    return _mapti(its, dw0, dw1, dw2, dw1 & _EVID_MASK)


def cmd_movi(its, dw0, dw1, dw2, dw3):
    device_id, event_id = _ids(dw0, dw1)
    ite = its.find_ite(device_id, event_id)
    if ite is None:
        return R.E_ITS_MOVI_UNMAPPED_INTERRUPT
    if ite.collection is None or not ite.collection.mapped:
        return R.E_ITS_MOVI_UNMAPPED_COLLECTION
    coll = its.collections.get(dw2 & R.ICID_MASK)
    if coll is None or not coll.mapped:
        return R.E_ITS_MOVI_UNMAPPED_COLLECTION
    ite.collection = coll
    its.invalidate_cache()
    ite.lpi.target = its.collection_vcpu(coll)
    return 0


def cmd_discard(its, dw0, dw1, dw2, dw3):
    device_id, event_id = _ids(dw0, dw1)
    dev = its.devices.get(device_id)
    ite = None if dev is None else dev.ites.get(event_id)
    if ite is None or ite.collection is None or not ite.collection.mapped:
        return R.E_ITS_DISCARD_UNMAPPED_INTERRUPT
    its.invalidate_cache()
    its.free_ite(dev, ite)
    if its.vm.kernel.zero_on_unmap:
        return _zero_entry(its, dev.itt_addr + event_id * R.VITS_ITE_SIZE)
    return 0


def cmd_clear(its, dw0, dw1, dw2, dw3):
    ite = its.find_ite(*_ids(dw0, dw1))
    if ite is None:
        return R.E_ITS_CLEAR_UNMAPPED_INTERRUPT
    ite.lpi.pending = False
    return 0


def cmd_int(its, dw0, dw1, dw2, dw3):
    err, _, _ = its.trigger_msi(*_ids(dw0, dw1))
    return err


def cmd_inv(its, dw0, dw1, dw2, dw3):
    ite = its.find_ite(*_ids(dw0, dw1))
    if ite is None:
        return R.E_ITS_INV_UNMAPPED_INTERRUPT
    return its.vm.update_lpi_config(ite.lpi, None)


def cmd_invall(its, dw0, dw1, dw2, dw3):
    coll = its.collections.get(dw2 & R.ICID_MASK)
    if coll is None or not coll.mapped:
        return R.E_ITS_INVALL_UNMAPPED_COLLECTION
    vcpu = its.collection_vcpu(coll)
    its.vm.invall(vcpu)
    return 0


def cmd_movall(its, dw0, dw1, dw2, dw3):
    vm = its.vm
    vcpu1 = vm.vcpu_from_rdbase((dw2 >> R.RDBASE_SHIFT) & R.RDBASE_MASK)
    vcpu2 = vm.vcpu_from_rdbase((dw3 >> R.RDBASE_SHIFT) & R.RDBASE_MASK)
    if vcpu1 is None or vcpu2 is None:
        return R.E_ITS_MOVALL_PROCNUM_OOR
    if vcpu1 == vcpu2:
        return 0
    if vm.kernel.copy_lpi_list:  # <= v6.9: vgic_copy_lpi_list(vcpu1), then update_affinity
        for intid in vm.copy_lpi_list(vcpu1):
            vm.lpis[intid].target = vcpu2
    elif vm.kernel.movall_filters_source:
        # stable 6.12.113 ("Fix MOVALL handling of source redistributor"): the xarray walk
        # calls update_affinity(irq, vcpu1, vcpu2), which skips LPIs not targeting vcpu1
        for lpi in vm.lpis.values():
            if lpi.target == vcpu1:
                lpi.target = vcpu2
    else:
        # v6.10+: the xarray walk retargets every LPI of the VM (no vCPU1 filter)
        for lpi in vm.lpis.values():
            lpi.target = vcpu2
    its.invalidate_cache()
    return 0


def cmd_sync(its, dw0, dw1, dw2, dw3):
    return 0  # "we are in sync all of the time"


# vgic_its_handle_command's switch, keyed through the one opcode table (regs.ITS_OPCODES).
HANDLERS = {
    R.ITS_OPCODES[name]: handler
    for name, handler in {
        "MOVI": cmd_movi,
        "INT": cmd_int,
        "CLEAR": cmd_clear,
        "SYNC": cmd_sync,
        "MAPD": cmd_mapd,
        "MAPC": cmd_mapc,
        "MAPTI": cmd_mapti,
        "MAPI": cmd_mapi,
        "INV": cmd_inv,
        "INVALL": cmd_invall,
        "MOVALL": cmd_movall,
        "DISCARD": cmd_discard,
    }.items()
}

"""ITS commands: gicv3_its_process_command and the decoded line after it become one
COMMAND record with the 32 raw bytes (from the --cmdq dump, or encoded from the line with
the operands Linux's driver implies, docs/import-qemu.md §4), while the shadow ITS follows
KVM's rules to see what each command changes and where QEMU differs."""

from gictools import entries as E
from gictools import regs as R
from gictools.cmdlayout import decode_command, encode_command
from gictools.trace import format as F
from gictools.trace.qemu.events import CMD_EVENTS
from gictools.trace.qemu.machine import (
    BASER_PA,
    LPI_BASE,
    QEMU_ITT_ENTRY_SIZE,
    QEMU_RDBASE_PROCNUM_MASK,
    SZ_64K,
)
from gictools.trace.qemu.records import CfgByte, L1Entry
from gictools.trace.qemu.state import CmdCtx


class CommandEvents:
    """Importer handlers of gicv3_its_process_command and the gicv3_its_cmd_* lines (mixed
    into Importer)."""

    def on_process_command(self, t, tid, args):
        slot, opcode = args
        self._close(tid)
        self.side.ctx[tid] = CmdCtx(self.lineno, slot, opcode)

    def _command(self, t, tid, name, **fields):
        """The decoded-command line of thread tid's open process_command: (ctx, raw or None)."""
        side = self.side
        c = side.ctx.get(tid)
        ev = f"gicv3_its_cmd_{name.lower()}"
        if not isinstance(c, CmdCtx) or c.decoded:
            raise self.error(f"{ev} without a preceding gicv3_its_process_command")
        if CMD_EVENTS.get(c.opcode) != ev:
            raise self.error(f"{ev} after process_command of opcode {c.opcode:#x} (line {c.line})")
        c.decoded = True
        if side.cmdq_last is not None and c.slot > side.cmdq_last and side.dump is None:
            self._dump_here(t)
        if c.slot in side.slots_seen:
            side.cmdq_usable = False  # the queue wrapped: the dump is newer
        side.slots_seen.add(c.slot)
        raw = side.cmdq.get(c.slot) if side.cmdq_usable else None
        if raw is not None:
            got, gfields = decode_command(raw)
            want = dict(fields)
            if got == name == "MAPC":  # QEMU logs a processor number: RDbase's low 16 bits
                if not fields["V"]:
                    want.pop("RDbase")  # logged as 0
                gfields = dict(gfields, RDbase=gfields["RDbase"] & QEMU_RDBASE_PROCNUM_MASK)
            if got != name or any(gfields.get(k) != v for k, v in want.items()):
                raise self.error(
                    f"the command queue dump has {got} {gfields} in slot "
                    f"{c.slot:#x}, the trace {name} {fields}: not the same capture?"
                )
            self.stats["commands_from_cmdq"] += 1
        return c, raw

    def _cmd_record(self, t, tid, name, raw, **fields):
        if raw is None:
            try:
                raw = encode_command(name, **fields)
            except ValueError as e:
                raise self.error(f"{name}: {e}: not a value QEMU can log") from None
        self._rec("command", t, tid, 0, raw)
        self.stats["commands"] += 1
        return raw

    def _target(self, icid):
        return self.shadow.collections.get(icid, 0)

    def on_cmd_mapd(self, t, tid, args):
        dev, size, itt, valid = args
        c, raw = self._command(t, tid, "MAPD", DeviceID=dev, Size=size, ITT_addr=itt, V=valid)
        if raw is None:
            # validate the fields before anything is reconstructed for them
            self._cmd_record_check("MAPD", DeviceID=dev, Size=size, ITT_addr=itt, V=valid)
        self._l1_entry(t, tid, dev)
        sh = self.shadow
        old = sh.devices.pop(dev, None)
        if old:
            self.flags["mapd_remap_with_ites" if valid else "mapd_unmap_with_ites"] += 1
            for ite in old.values():
                sh.drop_ite(ite)
                self._lpi_event(ite[0], "unmap")
        if valid:
            sh.devices[dev] = {}
            n = max(256, (2 << size) * QEMU_ITT_ENTRY_SIZE)
            self.recon.regions.append((itt << R.ITT_ADDR_SHIFT, n))
        self._cmd_record(t, tid, "MAPD", raw, DeviceID=dev, Size=size, ITT_addr=itt, V=valid)

    def _cmd_record_check(self, name, **fields):
        try:
            encode_command(name, **fields)
        except ValueError as e:
            raise self.error(f"{name}: {e}: not a value QEMU can log") from None

    def _l1_entry(self, t, tid, dev):
        """Linux writes a level-1 entry (and zeroes a level-2 page) before the first MAPD of a
        DeviceID range of a two-level device table; none of that is an ITS access."""
        b = self.regs.baser0()
        L = R.GITS_BASER_LAYOUT
        if not (L["Valid"].get(b) and L["Indirect"].get(b)) or dev > R.VITS_MAX_DEVID:
            return  # KVM: E_ITS_MAPD_DEVICE_OOR beyond 16 DeviceID bits, whatever the table
        # KVM's geometry whatever the guest wrote: 64 KiB pages, 8-byte DTEs
        # (vgic_sanitise_its_baser forces Page_Size; Entry_Size is read-only)
        page = SZ_64K
        index = dev // (page // E.ENTRY_SIZE)
        if (b, index) in self.recon.l1_done:
            return
        l1 = (BASER_PA.get(b) << BASER_PA.shift) + 8 * index
        if index >= (L["Size"].get(b) + 1) * page // 8:
            return  # beyond the level-1 table: KVM answers E_ITS_MAPD_DEVICE_OOR
        self.recon.l1_done.add((b, index))
        self._emit(L1Entry(t, tid, l1, page))

    def on_cmd_mapc(self, t, tid, args):
        icid, rdbase, valid = args
        if rdbase > QEMU_RDBASE_PROCNUM_MASK:
            raise self.error(
                f"MAPC: RDbase {rdbase:#x} does not fit QEMU's 16-bit processor number "
                f"(RDBASE_PROCNUM_MASK {QEMU_RDBASE_PROCNUM_MASK:#x}): not a value QEMU can log"
            )
        c, raw = self._command(t, tid, "MAPC", ICID=icid, RDbase=rdbase, V=valid)
        self._cmd_record(t, tid, "MAPC", raw, ICID=icid, RDbase=rdbase, V=valid)
        sh = self.shadow
        sh.last_mapc_icid = icid
        smp = self.side.cmdline.get("vcpus")
        if valid and rdbase >= (smp or F.MAX_VCPUS):
            # QEMU refuses it (no cte_write), KVM answers E_ITS_MAPC_PROCNUM_OOR: no change
            self.flags["mapc_procnum_oor"] += 1
            return
        if not valid:
            self.flags["mapc_unmap"] += 1
            sh.collections.pop(icid, None)
            return
        if smp is None:
            self._cpu(rdbase, "RDbase")
        old = sh.collections.get(icid)
        if old is not None and old != rdbase and sh.icid_refs[icid] > 0:
            self.flags["mapc_retarget_live_collection"] += 1
        sh.collections[icid] = rdbase
        sh.last_target = rdbase

    def _mapti(self, t, tid, name, dev, ev, icid, intid):
        fields = dict(DeviceID=dev, EventID=ev, ICID=icid)
        if name == "MAPTI":
            fields["pINTID"] = intid
        c, raw = self._command(t, tid, name, **fields)
        if raw is None:
            self._cmd_record_check(name, **fields)
        sh = self.shadow
        ites = sh.devices.get(dev)
        if ites is None:
            self.flags["mapti_unmapped_device"] += 1
        elif ev in ites:
            self.flags["mapti_over_existing_ite"] += 1  # QEMU overwrites, KVM ignores
        elif not LPI_BASE <= intid < self.regs.prop_limit:  # KVM: 2^min(IDbits+1, 16)
            self.flags["mapti_intid_out_of_range"] += 1  # KVM: E_ITS_MAPTI_PHYSICALID_OOR
        else:
            new = sh.refs[intid] <= 0
            sh.add_ite(dev, ev, intid, icid)
            target = sh.collections.get(icid)
            if new:
                self.recon.created[intid] = len(self.records)
                if target is not None:
                    self._pending_load(t, tid, target, "map", intid)
            self._lpi_event(intid, "map")
            self._cfg(t, tid, intid, self.regs.prop_gpa(intid))  # only if needed
        sh.last_target = self._target(icid)
        self._cmd_record(t, tid, name, raw, **fields)

    def on_cmd_mapti(self, t, tid, args):
        self._mapti(t, tid, "MAPTI", *args)

    def on_cmd_mapi(self, t, tid, args):
        dev, ev, icid = args
        self._mapti(t, tid, "MAPI", dev, ev, icid, ev)

    def on_cmd_movi(self, t, tid, args):
        dev, ev, icid = args
        c, raw = self._command(t, tid, "MOVI", DeviceID=dev, EventID=ev, ICID=icid)
        sh = self.shadow
        ite = sh.ite(dev, ev)
        # Linux syncs the collection the event was on (its_build_movi_cmd: dev_event_to_col,
        # which the driver updates only after the command)
        sh.last_target = self._target(icid if ite is None else ite[1])
        if ite is not None and icid in sh.collections:
            sh.move_ite(ite, icid)
        self._cmd_record(t, tid, "MOVI", raw, DeviceID=dev, EventID=ev, ICID=icid)

    def on_cmd_discard(self, t, tid, args):
        dev, ev = args
        c, raw = self._command(t, tid, "DISCARD", DeviceID=dev, EventID=ev)
        sh = self.shadow
        ite = sh.ite(dev, ev)
        if ite is not None:
            sh.last_target = self._target(ite[1])
            del sh.devices[dev][ev]
            sh.drop_ite(ite)
            self._lpi_event(ite[0], "discard")
            if sh.qemu_pending[ite[0]] > 0:
                self.flags["discard_while_pending"] += 1
        self._cmd_record(t, tid, "DISCARD", raw, DeviceID=dev, EventID=ev)

    def on_cmd_inv(self, t, tid, args):
        dev, ev = args
        c, raw = self._command(t, tid, "INV", DeviceID=dev, EventID=ev)
        ite = self.shadow.ite(dev, ev)
        if ite is None:
            self.flags["inv_unmapped"] += 1
        else:
            self.shadow.last_target = self._target(ite[1])
            gpa = self.regs.prop_gpa(ite[0])
            if gpa is not None:
                self._lpi_event(ite[0], "inv")
                self._cfg(t, tid, ite[0], gpa)
        self._cmd_record(t, tid, "INV", raw, DeviceID=dev, EventID=ev)

    def on_cmd_invall(self, t, tid, args):
        c, raw = self._command(t, tid, "INVALL")
        sh = self.shadow
        if raw is None:
            icid = sh.last_mapc_icid  # Linux: MAPC, SYNC, INVALL of one collection
            self.stats["invall_icid_inferred"] += 1
        else:
            icid = decode_command(raw)[1]["ICID"]
        rd = sh.collections.get(icid)
        if rd is None:
            self.flags["invall_unmapped_collection"] += 1  # KVM: E_ITS_INVALL_UNMAPPED_COLLECTION
        else:
            sh.last_target = rd
            cols = sh.collections
            side = len(self.sides) - 1
            events, line, emit = self.recon.lpi_events, self.lineno, self._emit
            for d in sh.devices.values():
                for intid, ic in d.values():
                    if cols.get(ic) == rd:
                        events.setdefault(intid, []).append(("invall", len(self.records), side))
                        emit(CfgByte(t, tid, intid, self.regs.prop_gpa(intid), line, side))
        self._cmd_record(t, tid, "INVALL", raw, ICID=icid)

    def on_cmd_sync(self, t, tid, args):
        c, raw = self._command(t, tid, "SYNC")
        if raw is None:
            self.stats["sync_rdbase_inferred"] += 1
        self._cmd_record(t, tid, "SYNC", raw, RDbase=self.shadow.last_target)

    def on_cmd_movall(self, t, tid, args):
        rd1, rd2 = args
        c, raw = self._command(t, tid, "MOVALL", RDbase=rd1, RDbase2=rd2)
        self.flags["movall"] += 1  # QEMU moves pending bits; KVM retargets LPIs
        self.shadow.last_target = rd2 & 0xFFFF_FFFF
        self._cmd_record(t, tid, "MOVALL", raw, RDbase=rd1, RDbase2=rd2)

    def _devev(name):
        def handler(self, t, tid, args):
            dev, ev = args
            c, raw = self._command(t, tid, name, DeviceID=dev, EventID=ev)
            self.flags[name.lower()] += 1
            sh = self.shadow
            ite = sh.ite(dev, ev)
            if ite is None:
                self.flags[f"{name.lower()}_unmapped"] += 1  # KVM: E_ITS_*_UNMAPPED_INTERRUPT
            else:
                sh.last_target = self._target(ite[1])
                if name == "INT":
                    self._trigger(ite[0], "int")
                else:  # CLEAR
                    sh.qemu_pending[ite[0]] = 0
            self._cmd_record(t, tid, name, raw, DeviceID=dev, EventID=ev)

        return handler

    def on_cmd_virtual(self, t, tid, args):
        c = self.side.ctx.get(tid)
        if not isinstance(c, CmdCtx) or c.decoded:
            raise self.error("a GICv4 command line without a preceding process_command")
        c.decoded = True
        self.flags["gicv4_commands"] += 1  # KVM's vITS ignores every V* command
        self._opaque(t, tid, c, c.opcode & 0xFF)

    def on_cmd_unknown(self, t, tid, args):
        c = self.side.ctx.get(tid)
        if not isinstance(c, CmdCtx) or c.decoded:
            raise self.error("gicv3_its_cmd_unknown without a preceding process_command")
        c.decoded = True
        self.flags["unknown_commands"] += 1
        self._opaque(t, tid, c, args[0] & 0xFF)

    def _opaque(self, t, tid, c, opcode):
        side = self.side
        raw = side.cmdq.get(c.slot) if side.cmdq_usable else None
        if raw is None or raw[0] != opcode:
            raw = bytes([opcode]) + bytes(31)
        self._rec("command", t, tid, 0, raw)
        self.stats["commands"] += 1

    HANDLERS = {
        "gicv3_its_process_command": on_process_command,
        "gicv3_its_cmd_int": _devev("INT"),  # type: ignore[arg-type]  # class-body factory
        "gicv3_its_cmd_clear": _devev("CLEAR"),  # type: ignore[arg-type]  # class-body factory
        "gicv3_its_cmd_discard": on_cmd_discard,
        "gicv3_its_cmd_sync": on_cmd_sync,
        "gicv3_its_cmd_mapd": on_cmd_mapd,
        "gicv3_its_cmd_mapc": on_cmd_mapc,
        "gicv3_its_cmd_mapi": on_cmd_mapi,
        "gicv3_its_cmd_mapti": on_cmd_mapti,
        "gicv3_its_cmd_inv": on_cmd_inv,
        "gicv3_its_cmd_invall": on_cmd_invall,
        "gicv3_its_cmd_movall": on_cmd_movall,
        "gicv3_its_cmd_movi": on_cmd_movi,
        "gicv3_its_cmd_vmapi": on_cmd_virtual,
        "gicv3_its_cmd_vmapti": on_cmd_virtual,
        "gicv3_its_cmd_vmapp": on_cmd_virtual,
        "gicv3_its_cmd_vmovp": on_cmd_virtual,
        "gicv3_its_cmd_vsync": on_cmd_virtual,
        "gicv3_its_cmd_vmovi": on_cmd_virtual,
        "gicv3_its_cmd_vinvall": on_cmd_virtual,
        "gicv3_its_cmd_unknown": on_cmd_unknown,
    }

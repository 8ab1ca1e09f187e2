#!/bin/sh
# gictools record kvm: record one VM's virtual GICv3 ITS activity on an arm64 KVM host with the
# kernel's own tracing (tracefs kprobes/kretprobes and the kvm:kvm_mmio tracepoint). POSIX sh and
# busybox only: no Python, no compiler, no kernel patch, no VMM change. Needs root (tracefs).
#
#   record.sh [-o LOG] [-b KB] -- COMMAND [ARGS...]   run COMMAND (the VMM) under recording, from
#                                                      its first instruction (VM creation included)
#   record.sh [-o LOG] [-b KB] [-t SEC] -p PID         attach to a running VMM until it exits, SIGINT
#                                                      or SIGTERM, or for SEC seconds (mid-life: see
#                                                      docs/record-kvm.md for what is lost)
#   -o LOG   raw log (default kvm-record.log); convert anywhere with `gictools import kvm LOG`
#   -b KB    trace buffer per CPU in KiB (default 16384)
#
# Lost events (trace buffer overruns, kprobe misses) are written into the log and reported on
# stderr; exit status 3 when any were lost. Probes and the trace instance are removed on exit.
set -u
LOG=kvm-record.log; KB=16384; PID=; SECS=
while [ $# -gt 0 ]; do
  case "$1" in
    -o) LOG=$2; shift 2 ;;
    -b) KB=$2; shift 2 ;;
    -p) PID=$2; shift 2 ;;
    -t) SECS=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,15p' "$0" 2>/dev/null | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
done
die() { echo "record.sh: $*" >&2; exit 2; }
[ -n "$PID" ] || [ $# -gt 0 ] || die "give -p PID or -- COMMAND (see -h)"
T=/sys/kernel/tracing
[ -w "$T/kprobe_events" ] || T=/sys/kernel/debug/tracing
[ -w "$T/kprobe_events" ] || die "no writable tracefs kprobe_events (root, CONFIG_KPROBE_EVENTS, mount -t tracefs nodev /sys/kernel/tracing)"
G=gictools_$$
I=$T/instances/$G
KS=/proc/kallsyms
have() { grep -q " $1\$" $KS; }   # a probe-able (not inlined) symbol
PROBES=
addp() {  # NAME DEFINITION...: add one probe; remember it for clean-up
  n=$1; shift
  t=$1; shift
  if echo "$t:$G/$n $*" >> "$T/kprobe_events" 2>/dev/null; then
    PROBES="$PROBES $n"
  else
    echo "record.sh: probe $n not available: $*" >&2; echo "# noprobe $n $*" >> "$LOG"
  fi
}
READER=
cleanup() {
  trap - EXIT INT TERM HUP
  [ -d "$I" ] && echo 0 > "$I/tracing_on" 2>/dev/null
  [ -n "$READER" ] && kill "$READER" 2>/dev/null && wait "$READER" 2>/dev/null
  if [ -d "$I" ]; then
    for n in $PROBES; do echo 0 > "$I/events/$G/$n/enable" 2>/dev/null; done
    echo 0 > "$I/events/kvm/kvm_mmio/enable" 2>/dev/null
    rmdir "$I" 2>/dev/null
  fi
  for n in $PROBES; do echo "-:$G/$n" >> "$T/kprobe_events" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

: > "$LOG" || die "cannot write $LOG"
mkdir "$I" || die "cannot create trace instance $I"
echo 0 > "$I/tracing_on"   # events are enabled one by one: recording starts when all are
echo "# gictools-kvm-record 1" >> "$LOG"
echo "# kernel $(uname -r)" >> "$LOG"
echo "# machine $(uname -m)" >> "$LOG"
echo "# date $(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$LOG"
echo "# cpus $(ls -d /sys/devices/system/cpu/cpu[0-9]* | wc -l)" >> "$LOG"

# --- the probes (argument layouts: uapi structs only, so no per-kernel offsets) ---------------
# VM creation (KVM_CREATE_VM on /dev/kvm): the importer separates the VMs of one VMM process by it
addp create_vm p kvm_dev_ioctl 'cmd=$arg2:x32'
# VM set-up ioctls: KVM_CREATE_VCPU (arg = vcpu id), KVM_SET_USER_MEMORY_REGION(2) (struct
# kvm_userspace_memory_region: slot/flags, guest_phys_addr, memory_size, userspace_addr),
# KVM_CREATE_DEVICE (struct kvm_create_device: type).
addp vm_ioctl p kvm_vm_ioctl 'cmd=$arg2:x32' 'u0=+u0($arg3):x64' 'u8=+u8($arg3):x64' 'u16=+u16($arg3):x64' 'arg=$arg3:x64'
# Device attributes (struct kvm_device_attr: flags, group @4, attr @8, addr @16 -> the u64 value)
# of the ITS (addresses, CTRL: init/reset/save/restore tables, userspace ITS register writes) and
# of the vGICv3 (addresses, CTRL: init, save pending tables, redistributor/distributor registers).
addp its_attr p vgic_its_set_attr 'dev=$arg1:x64' 'grp=+4($arg2):u32' 'attr=+8($arg2):x64' 'val=+u0(+16($arg2)):x64'
addp its_attr_ret r vgic_its_set_attr 'ret=$retval:s32'
addp v3_attr p vgic_v3_set_attr 'grp=+4($arg2):u32' 'attr=+8($arg2):x64' 'val=+u0(+16($arg2)):x64'
addp v3_attr_ret r vgic_v3_set_attr 'ret=$retval:s32'
# Guest memory KVM reads (command queue entries, LPI configuration bytes, pending bits, the tables
# a restore reads): kvm_read_guest's address, length and buffer at entry, the bytes at return. Where
# return probes take $argN (Linux >= 6.9, README "kernel return probes support: ... $arg<N>") the
# buffer is read through $arg3; before, from a window of the caller's stack (the buffers are the
# callers' locals; the entry's data - sp says where in the window), so no per-kernel offsets.
addp rd p kvm_read_guest 'gpa=$arg2:x64' 'len=$arg4:u64' 'data=$arg3:x64' 'sp=$stack:x64'
if [ -z "${GICTOOLS_STACK_WINDOW:-}" ] && grep -q "return probes support:.*[$]arg" "$T/README"; then
  addp rd_ret r kvm_read_guest 'ret=$retval:s32' 'd0=+0($arg3):x64' 'd1=+8($arg3):x64' 'd2=+16($arg3):x64' 'd3=+24($arg3):x64'
else
  W=; o=0; while [ $o -lt 256 ]; do W="$W s$((o / 8))=+$o(\$stack):x64"; o=$((o + 8)); done
  addp rd_ret r kvm_read_guest 'ret=$retval:s32' $W
fi
# MSIs (struct kvm_msi: address_lo, address_hi, data @8, flags @12, devid @16) and their result
addp msi p vgic_its_inject_msi 'a=+0($arg2):x64' 'data=+8($arg2):u32' 'flags=+12($arg2):u32' 'devid=+16($arg2):u32'
addp msi_ret r vgic_its_inject_msi 'ret=$retval:s32'
# Translation cache: lookup (0 = hit), fill (resolve 0 = translated and cached), invalidation
addp cached p vgic_its_inject_cached_translation 'a=+0($arg2):x64' 'data=+8($arg2):u32' 'devid=+16($arg2):u32'
addp cached_ret r vgic_its_inject_cached_translation 'ret=$retval:s32'
addp resolve p vgic_its_resolve_lpi 'devid=$arg3:u32' 'eventid=$arg4:u32'
addp resolve_ret r vgic_its_resolve_lpi 'ret=$retval:s32'
addp inval p vgic_its_invalidate_cache 'obj=$arg1:x64'
# Where kprobes take BTF-typed arguments (README: "<argname>[->field..."): the LPI an MSI made
# pending and its target vCPU (struct vgic_irq through BTF: no offsets written here)
if grep -q -- '->field' "$T/README"; then
  addp queue p vgic_queue_irq_unlock 'intid=irq->intid:u32' 'vcpu=irq->target_vcpu->vcpu_idx:s32'
fi
have vgic_its_invalidate_all_caches && addp inval_all p vgic_its_invalidate_all_caches 'kvm=$arg1:x64'

case " $PROBES " in *" rd "*) ;; *) die "kvm_read_guest cannot be probed: commands would be lost" ;; esac
case " $PROBES " in *" rd_ret "*) ;; *) die "kvm_read_guest's return cannot be probed: commands would be lost" ;; esac
case " $PROBES " in *" msi "*) ;; *) die "vgic_its_inject_msi cannot be probed: MSIs would be lost" ;; esac

echo "$KB" > "$I/buffer_size_kb" || die "cannot size the trace buffer to $KB KiB"
grep -q mono "$I/trace_clock" && echo mono > "$I/trace_clock"
# Every process's events are recorded, each line with its thread-group id (record-tgid), and the
# importer keeps the VMM's. The kernel's own pid filter (set_event_pid + event-fork) was measured
# to drop events without counting them (16 of 16000 MSIs, in the middle of a run, 6.12.118).
echo 1 > "$I/options/record-tgid"
[ -d "$I/events/$G/queue" ] && echo 'intid >= 8192' > "$I/events/$G/queue/filter"   # LPIs only
echo 'cmd == 0xae01' > "$I/events/$G/create_vm/filter"
# VM ioctls other than the set-up ones (KVM_SIGNAL_MSI, KVM_IRQ_LINE, ...) are not logged
echo 'cmd == 0xae41 || cmd == 0x4020ae46 || cmd == 0x40a0ae49 || cmd == 0xc00caee0' > "$I/events/$G/vm_ioctl/filter"
for n in $PROBES; do echo 1 > "$I/events/$G/$n/enable"; done
echo 1 > "$I/events/kvm/kvm_mmio/enable" 2>/dev/null || echo "# noevent kvm:kvm_mmio (guest MMIO register writes lost)" >> "$LOG"
echo "# probes$PROBES" >> "$LOG"
grep ":$G/" "$T/kprobe_events" | sed 's/^/# kprobe_event /' >> "$LOG"

stats() {  # lost events: ring-buffer overruns and dropped events per CPU, kprobe misses
  lost=0
  for s in "$I"/per_cpu/cpu*/stats; do
    c=${s%/stats}; c=${c##*/cpu}
    o=$(sed -n 's/^overrun: //p' "$s"); d=$(sed -n 's/^dropped events: //p' "$s")
    echo "# stats cpu $c overrun ${o:-0} dropped ${d:-0}" >> "$LOG"
    [ "${o:-0}" = 0 ] && [ "${d:-0}" = 0 ] || lost=1
  done
  # probe hits and misses while recording (kprobe_profile names events without their group;
  # its counts run from the probe's creation: the counts at start are subtracted)
  while read -r ev hits miss; do
    ev=${ev#"$G"/}
    case " $PROBES " in *" $ev "*)
      h0=0; m0=0
      while read -r e0 a b; do [ "${e0#"$G"/}" = "$ev" ] && h0=$a && m0=$b; done <<EOF0
$PROFILE0
EOF0
      echo "# kprobe $ev hits $((hits - h0)) missed $((miss - m0))" >> "$LOG"
      [ "$miss" = "$m0" ] || lost=1 ;; esac
  done <<EOF
$PROFILE
EOF
  return $lost
}

start() {  # tracing on, then the probe hits so far: the log's hits are those counted after this
  echo 1 > "$I/tracing_on"
  PROFILE0=$(cat "$T/kprobe_profile")
}

if [ -n "$PID" ]; then
  [ -d "/proc/$PID" ] || die "no process $PID"
  echo "# attach $PID $(tr '\0' ' ' < /proc/$PID/cmdline)" >> "$LOG"
  echo "# pid $PID" >> "$LOG"
  start
  cat "$I/trace_pipe" >> "$LOG" & READER=$!
  echo "record.sh: recording VMM $PID into $LOG; stop with Ctrl-C or kill $$" >&2
  trap 'STOP=1' INT TERM HUP; STOP=; n=0   # (a background job ignores SIGINT: use TERM)
  while [ -z "$STOP" ] && [ -d "/proc/$PID" ]; do
    sleep 1; n=$((n + 1)); [ -n "$SECS" ] && [ "$n" -ge "$SECS" ] && break
  done
  RC=0
else
  echo "# run $*" >> "$LOG"
  start
  cat "$I/trace_pipe" >> "$LOG" & READER=$!
  # the child logs its own pid, then becomes the VMM
  sh -c 'echo "# pid $$" >> "$1"; shift; exec "$@"' sh "$LOG" "$@"
  RC=$?
  echo "# exit $RC" >> "$LOG"
fi
# probe hits as tracing stops (a VMM attached to runs on, and its calls would count as lost)
PROFILE=$(cat "$T/kprobe_profile")
echo 0 > "$I/tracing_on"
# The reader ends by itself once it has drained the buffer (trace_pipe gives EOF when tracing is
# off and it has read something). Killing it earlier loses what it holds between a read and its
# write (measured: 8-16 MSIs of 16000 under load), so it is killed only when the buffer is empty
# and it still waits: then it never read anything.
alive() {  # running (an exited child stays a zombie until waited for)
  st=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null)
  [ -n "$st" ] && [ "$st" != Z ]
}
n=0
while alive "$READER"; do
  sleep 1; n=$((n + 1))
  if [ $n -ge 3 ] && ! grep -h '^entries:' "$I"/per_cpu/cpu*/stats | grep -qv 'entries: 0$'; then
    kill "$READER" 2>/dev/null
  fi
done
wait "$READER" 2>/dev/null; READER=
grep -v '^#' "$I/trace" >> "$LOG"   # whatever the reader left (nothing, normally)
if stats; then
  echo "# end lost 0" >> "$LOG"
else
  echo "# end lost 1" >> "$LOG"
  echo "record.sh: EVENTS WERE LOST (see '# stats' and '# kprobe' lines in $LOG): raise -b or record less" >&2
  [ "$RC" = 0 ] && RC=3
fi
echo "record.sh: wrote $LOG ($(wc -l < "$LOG") lines)" >&2
exit "$RC"

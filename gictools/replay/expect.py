"""Expectation records checked against one policy's model (docs/trace-format.md)."""

from gictools import regs as R


def check_expectation(run, kind, args):
    """None if the expectation holds on run's model, else a one-line reason."""
    vm = run.vm
    a = args if isinstance(args, dict) else {}
    try:
        if kind == "pending":
            intid, vcpu, want = a["intid"], a["vcpu"], bool(a.get("pending", True))
            lpi = vm.lpis.get(intid)
            got = lpi is not None and lpi.pending and lpi.target == vcpu
            if got != want:
                return (
                    f"expected INTID {intid} {'' if want else 'not '}pending on vCPU {vcpu}; "
                    f"model: {lpi!r}"
                )
        elif kind == "cmd_error":
            if run.last_cmd_error != a["error"]:
                return (
                    f"expected the last command to return {R.error_name(a['error'])}, "
                    f"got {R.error_name(run.last_cmd_error or 0)}"
                )
        elif kind == "msi":
            if run.last_msi is None:
                return "expectation on the last MSI, but no MSI came before"
            ret, err, intid, vcpu = run.last_msi
            for key, got in (("ret", ret), ("error", err), ("intid", intid), ("vcpu", vcpu)):
                if key in a and a[key] != got:
                    return f"expected the last MSI's {key} = {a[key]!r}, got {got!r}"
        elif kind == "ctrl":
            if run.last_ctrl != a["ret"]:
                return f"expected the last device control to return {a['ret']}, got {run.last_ctrl}"
        elif kind == "lpi":
            lpi = vm.lpis.get(a["intid"])
            if "exists" in a and bool(a["exists"]) != (lpi is not None):
                return f"expected INTID {a['intid']} {'to exist' if a['exists'] else 'absent'}"
            for key, attr in (
                ("vcpu", "target"),
                ("priority", "priority"),
                ("enabled", "enabled"),
                ("pending", "pending"),
            ):
                if key in a:
                    if lpi is None:
                        return f"expected INTID {a['intid']} with {key}={a[key]!r}: no such LPI"
                    if getattr(lpi, attr) != a[key]:
                        return (
                            f"expected INTID {a['intid']} {key} = {a[key]!r}, "
                            f"model has {getattr(lpi, attr)!r}"
                        )
        elif kind == "its_reg":
            mask = a.get("mask", (1 << (8 * a["size"])) - 1)
            got = vm.itses[a["its"]].mmio_read(a["offset"], a["size"]) & mask
            if got != a["value"] & mask:
                return (
                    f"expected ITS register {a['offset']:#x} & {mask:#x} = "
                    f"{a['value'] & mask:#x}, model reads {got:#x}"
                )
        else:
            return None  # unknown kinds pass through unchecked (the replay counts them)
    except (KeyError, TypeError, IndexError) as e:
        return f"malformed {kind!r} expectation: missing or bad {e}"
    return None

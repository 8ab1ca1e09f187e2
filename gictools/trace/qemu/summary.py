"""What `import qemu` reports: the summary's text and its --json object."""


def _counts(counts: dict) -> str:
    """A {name: count} mapping as plain text, largest first: '256 delivered_after_invall,
    3 unmask' (the names are --json's keys; a skipped line's prefix is quoted)."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{n:,} {_name(k)}" for k, n in items)


def _name(key: str) -> str:
    return key if key.isidentifier() else f'"{key}"'


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


class ImportSummary(dict):
    """import_qemu()'s result: out, vm, metadata, records, msis, seconds."""

    def as_json(self) -> dict:
        """The one JSON object `import qemu --json` prints."""
        m = self["metadata"]
        e = m["emitted"]
        rc = m["reconstructed"]
        return {
            "out": self["out"],
            "records": self["records"],
            "msis": self["msis"],
            "commands": e.get("commands", 0),
            "acks": e.get("acks", 0),
            "expectations": {
                k: e.get(f"expect_{k}", 0)
                for k in ("msi", "lpi", "its_reg", "lpi_after_restore", "pending_after_restore")
            },
            "reconstructions": {
                "device_table_level2": len(rc["device_table_level2"]),
                "lpi_config_bytes": e.get("lpi_config_writes", 0),
                "lpi_config_bytes_by_reason": rc["lpi_config_bytes_by_reason"],
                "pending_bits": e.get("pending_bits_reconstructed", 0),
            },
            "unexplained_acks": m["unexplained_acks"]["count"],
            "skipped_lines": m["skipped_lines"],
            "warnings": m["qemu_only_semantics_and_anomalies"],
            "register_reads_qemu_vs_kvm": m["register_reads_qemu_vs_kvm"],
            "migration": None
            if "migration" not in m
            else {k: v for k, v in m["migration"].items() if k != "sides"},
            "seconds": round(self["seconds"], 3),
        }

    def text(self):
        m = self["metadata"]
        e = m["emitted"]
        rc = m["reconstructed"]
        reasons = rc["lpi_config_bytes_by_reason"]
        by_reason = f" ({_counts(reasons)})" if reasons else ""
        pages = _plural(len(rc["device_table_level2"]), "device-table level-2 page")
        lines = [
            f"wrote {self['out']}: {self['records']:,} records from {m['lines']:,} lines "
            f"in {self['seconds']:.2f} s",
            f"  vCPUs {self['vm']['vcpus']}, RAM {self['vm']['memory'][0][1] >> 20} MiB "
            f"({m['ram']['source']}), ITS at {self['vm']['itses'][0]['base']:#x}",
            f"  MSIs {self['msis']:,}, commands {e.get('commands', 0):,} "
            f"({e.get('commands_from_cmdq', 0):,} completed from the queue dump), "
            f"acks {e.get('acks', 0):,}",
            f"  expectations: msi {e.get('expect_msi', 0):,}, lpi {e.get('expect_lpi', 0):,}, "
            f"its_reg {e.get('expect_its_reg', 0):,}, "
            f"pending after restore {e.get('expect_pending_after_restore', 0):,}",
            f"  reconstructed: {pages}, {e.get('lpi_config_writes', 0):,} LPI config bytes{by_reason}, "
            f"{e.get('pending_bits_reconstructed', 0):,} pending bits",
        ]
        if "migration" in m:
            mg = m["migration"]
            lines.append(
                f"  migration: {mg['source']} -> {mg['destination']}, {mg['records']} records "
                f"(save, fresh VM, restore), {mg['lpis_carried']} LPIs carried, "
                f"{mg['pending_after_restore']} pending after restore"
            )
        if m["unexplained_acks"]["count"]:
            lines.append(f"  unexplained acknowledges: {m['unexplained_acks']['count']:,}")
        sk = sum(m["skipped_lines"].values())
        if sk:
            lines.append(f"  skipped {_plural(sk, 'other line')}: {_counts(m['skipped_lines'])}")
        if m["register_reads_qemu_vs_kvm"]:
            lines.append(
                "  register reads where QEMU and KVM differ by design (not compared): "
                + ", ".join(sorted(m["register_reads_qemu_vs_kvm"]))
            )
        q = m["qemu_only_semantics_and_anomalies"]
        lines.append(f"  QEMU-only semantics / anomalies: {_counts(q) if q else 'none'}")
        return "\n".join(lines)

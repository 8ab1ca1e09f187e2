"""What `gictools import kvm` saw and did (ImportStats), and its report lines for the CLI."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gictools.trace.kvm.logparse import LogInfo


@dataclass
class ImportStats:
    """What the import saw and did: counts for the summary, the cache observation, the checks."""

    info: LogInfo = field(default_factory=LogInfo)
    msis: int = 0
    msi_results: Counter = field(default_factory=Counter)
    commands: list[bytes] = field(
        default_factory=list
    )  # the first KEEP_COMMANDS (importer) queue entries
    n_commands: int = 0  # command-queue entries KVM read
    reg_writes: int = 0
    mmio_reads: int = 0
    mem_reads: int = 0
    reads_unobserved: int = 0  # reads whose bytes fell outside what the probe could fetch
    reads_failed: int = 0  # kvm_read_guest returned an error (KVM ignores that command)
    ctrls: int = 0
    msis_with_lpi: int = 0  # MSIs whose LPI and vCPU the kernel showed (expected in the trace)
    unreturned: int = 0  # operations whose return event is missing (imported without a result)
    ignored: Counter = field(default_factory=Counter)  # what was seen and not imported, by kind
    # the kernel's translation cache, observed (vgic_its_inject_cached_translation's return,
    # vgic_its_resolve_lpi's return, vgic_its_invalidate_cache / _all_caches calls)
    cache_hits: int = 0
    cache_misses: int = 0
    cache_fills: int = 0
    cache_invalidations: int = 0  # inside a recorded operation
    cache_invalidations_outside: int = 0  # outside any (VM teardown: vgic_its_destroy)
    cache_invalidate_all: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.info.kernel,
            "msis": self.msis,
            "msi_results": {str(k): v for k, v in sorted(self.msi_results.items(), key=str)},
            "commands": self.n_commands,
            "reg_writes": self.reg_writes,
            "mem_reads": self.mem_reads,
            "ctrls": self.ctrls,
            "lost": self.info.lost,
            "cache": {
                "hits": self.cache_hits,
                "misses": self.cache_misses,
                "fills": self.cache_fills,
                "invalidations": self.cache_invalidations,
                "invalidations_outside": self.cache_invalidations_outside,
                "invalidate_all": self.cache_invalidate_all,
            },
        }

    def summary_lines(self, out: object) -> list[str]:
        """The import's report: what was written, the kernel's cache, what was left out."""
        s = self
        lines = [
            f"wrote {out}: kernel {s.info.kernel}, {s.msis:,} MSIs "
            f"(results {dict(sorted(s.msi_results.items(), key=str))}), "
            f"{s.n_commands} commands, {s.reg_writes} register writes, "
            f"{s.mem_reads} guest-memory reads, {s.ctrls} controls",
            f"kernel cache: {s.cache_hits} hits, {s.cache_misses} misses, {s.cache_fills} fills, "
            f"{s.cache_invalidations} invalidations (+{s.cache_invalidations_outside} at teardown)",
        ]
        if s.reads_unobserved or s.reads_failed:
            lines.append(
                f"guest-memory reads: {s.reads_unobserved} partly outside the probe's window, "
                f"{s.reads_failed} failed in KVM"
            )
        if s.msis_with_lpi:
            lines.append(
                f"{s.msis_with_lpi} MSIs expected to reach the LPI and vCPU the kernel showed"
            )
        if s.unreturned:
            lines.append(f"{s.unreturned} operations without their return event (no expectation)")
        for what, n in sorted(s.ignored.items()):
            lines.append(f"not imported: {n} x {what}")
        if s.info.lost:
            lines.append(f"LOST while recording: {s.info.loss_summary()}")
        return lines

    def cache_verdict(self, m: dict[str, Any]) -> tuple[str, bool]:
        """(line, differs): the model's cache counts m (compare.model_cache_counts) against
        the kernel's hits, misses and fills."""
        kern = {"hits": self.cache_hits, "misses": self.cache_misses, "fills": self.cache_fills}
        diff = [k for k in kern if kern[k] != m[k]]
        line = (
            f"model ({m['policy']}): {m['hits']} hits, {m['misses']} misses, {m['fills']} fills, "
            f"{m['invalidations']} invalidations: "
            + ("agrees on hits, misses and fills" if not diff else "DIFFERS on " + ", ".join(diff))
        )
        return line, bool(diff)

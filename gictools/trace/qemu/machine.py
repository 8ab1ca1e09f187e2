"""QEMU `virt` facts the log does not state, and the importer's own bounds."""

from gictools import regs as R

QEMU_VIRT_ITS_BASE = 0x0808_0000  # hw/arm/virt.c VIRT_GIC_ITS
QEMU_VIRT_RAM_BASE = 0x4000_0000  # hw/arm/virt.c VIRT_MEM
QEMU_ITT_ENTRY_SIZE = 12  # QEMU's GITS_TYPER.ITT_entry_size + 1
# process_mapc keeps RDbase & RDBASE_PROCNUM_MASK (RDBASE_PROCNUM_LENGTH = 16: a
# GICR_TYPER.Processor_Number) and logs that; the command in the queue keeps all its bits
QEMU_RDBASE_PROCNUM_MASK = R.GICR_TYPER_LAYOUT["Processor_Number"].mask
MAX_RECORDS = 1 << 22  # records held in memory until the log is read (about 1 GB of log)
MAX_LISTED = 4096  # reconstructions listed one by one in the metadata (all are counted)
MAX_POINTS = 64  # pending-bit points listed, each with at most MAX_LISTED bits
MAX_SKIP_NAMES = 256  # distinct names of skipped lines counted one by one
MAX_RAM = 1 << 40  # a RAM slot the importer will declare (the model's memory is sparse)
LPI_BASE = R.LPI_BASE_INTID
SZ_64K = 0x10000
DEFAULT_PROP = 0xA2  # Linux: LPI_PROP_DEFAULT_PRIO | LPI_PROP_GROUP1
GITS_TRANSLATER_OFFSET = R.GITS_TRANSLATER - 0x10000  # within the translation frame
BASER_PA = R.GITS_BASER_LAYOUT["PA"]
CBASER_PA = R.GITS_CBASER_LAYOUT["PA"]
PROP_PA = R.GICR_PROPBASER_LAYOUT["PA"]
PROP_IDBITS = R.GICR_PROPBASER_LAYOUT["IDbits"]
PEND_PA = R.GICR_PENDBASER_LAYOUT["PA"]
TRIGGERS = ("msi", "int")  # LPI events that make it pending in QEMU

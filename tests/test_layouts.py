"""Register layouts own their bits: known answers from KVM (opcodes and command fields:
test_command_layout.py)."""

from gictools import VM
from gictools import regs as R


def test_res0_masks_are_the_kernels():
    # vgic-mmio-v3.c: GICR_PROPBASER / GICR_PENDBASER bits KVM drops on write
    assert R.GICR_PROPBASER_LAYOUT.res0_mask == (0x1F << 59) | (0xF << 52) | (0x3 << 5)
    assert R.GICR_PENDBASER_LAYOUT.res0_mask == (
        (1 << 63) | (0x7 << 59) | (0xF << 52) | (0xF << 12) | 0x7F
    )


def test_gicr_typer_from_its_layout():
    vm = VM(3, vcpu_ids=[4, 0x1234, 9])
    vm.add_its()
    # PLPIS | Processor_Number = vcpu_id | Affinity = reset_mpidr's Aff2:Aff1:Aff0 of vcpu_id
    # (Aff0 = id & 0xf, Aff1 = id >> 4 & 0xff, Aff2 = id >> 12 & 0xff) | Last. The Affinity
    # was Aff0 = id & 0xff before; real 6.1.192 / 6.12.118 read 0x0000_0101_0000_1101 for id 17
    assert vm.read_redist_reg(1, "GICR_TYPER") == 1 | (0x1234 << 8) | (0x012304 << 32)
    assert vm.read_redist_reg(2, "GICR_TYPER") == 1 | (9 << 8) | (9 << 32) | (1 << 4)
    assert vm.read_redist_reg(2, "GICR_TYPER", size=4) == 1 | (9 << 8) | (1 << 4)


def test_cwriter_keeps_only_the_offset():
    vm = VM(1)
    its = vm.add_its()
    its.write_reg("GITS_CBASER", (1 << 63) | 0x4100_0000 | 0xF)  # 16 pages
    assert its.write_reg("GITS_CWRITER", 0x8000 | 0x3F) == 0
    assert its.read_reg("GITS_CWRITER") == 0x8020  # Retry and bits 4:1 dropped
    assert its.queue_base() == 0x4100_0000
    its.write_reg("GITS_CBASER", (1 << 63) | 0x4100_F000)  # bits 15:12 cleared
    assert its.read_reg("GITS_CBASER") & 0xFFFF_F000 == 0x4100_0000

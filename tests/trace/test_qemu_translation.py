"""An MSI's translation in a QEMU log: the Device, Interrupt and Collection Table reads that
follow a GITS_TRANSLATER write on its thread must read the entry being translated (else the
lines are not one capture: an error naming both); an invalid entry or a virtual ITE ends the
translation, and QEMU delivered nothing."""

import gzip

import pytest
from captures import FIXTURES

from gictools.errors import ImportFormatError
from gictools.trace.qemu import convert

LOG = FIXTURES / "qemu" / "smp2-rebind.trace.log.gz"


def _first_translation(lines):
    """Index of the first GITS_TRANSLATER write followed by its DTE, ITE and CTE reads."""
    names = [ln.split(":", 2)[1].split(" ", 1)[0] if ":" in ln else "" for ln in lines]
    want = ["gicv3_its_dte_read", "gicv3_its_ite_read", "gicv3_its_cte_read"]
    return next(
        i
        for i, n in enumerate(names)
        if n == "gicv3_its_translation_write" and names[i + 1 : i + 4] == want
    )


def _convert_edited(tmp_path, step, old, new):
    """convert() of the capture with `old` replaced by `new` in the translation's read
    `step` (1 DTE, 2 ITE, 3 CTE)."""
    with gzip.open(LOG, "rt") as f:
        lines = f.readlines()
    k = _first_translation(lines) + step
    assert old in lines[k], lines[k]
    lines[k] = lines[k].replace(old, new)
    p = tmp_path / "edited.trace.log"
    p.write_text("".join(lines))
    return convert(p)


@pytest.mark.parametrize(
    ("step", "old", "new", "message"),
    [
        (1, "DeviceID 0x10:", "DeviceID 0x11:", r"Device Table read for DeviceID 0x11 inside the "
         r"translation of DeviceID 0x10 \(line \d+\)"),
        (2, "EventID 0x2:", "EventID 0x3:", r"Interrupt Table read for EventID 0x3 inside the "
         r"translation of EventID 0x2 \(line \d+\)"),
        (3, "ICID 0x1:", "ICID 0x0:", r"Collection Table read for ICID 0x0 inside the "
         r"translation of ICID 0x1 \(line \d+\)"),
    ],
    ids=["dte", "ite", "cte"],
)  # fmt: skip
def test_a_read_of_another_entry_is_not_one_capture(tmp_path, step, old, new, message):
    with pytest.raises(ImportFormatError, match=message):
        _convert_edited(tmp_path, step, old, new)


def _msi_expectations(meta):
    return meta["emitted"]["expect_msi"]


@pytest.mark.parametrize(
    ("step", "old", "new", "flag"),
    [
        (1, ": valid 1 size", ": valid 0 size", None),
        (2, ": valid 1 inttype 1", ": valid 0 inttype 1", None),
        (2, ": valid 1 inttype 1", ": valid 1 inttype 0", "msi_virtual_ite"),
        (3, ": valid 1 RDBase", ": valid 0 RDBase", None),
    ],
    ids=["dte-invalid", "ite-invalid", "ite-virtual", "cte-invalid"],
)
def test_an_invalid_entry_ends_the_translation(tmp_path, step, old, new, flag):
    _, before, _ = convert(LOG)
    _, after, _ = _convert_edited(tmp_path, step, old, new)
    assert _msi_expectations(after) == _msi_expectations(before) - 1
    if flag is not None:
        anomalies = "qemu_only_semantics_and_anomalies"
        assert after[anomalies][flag] == before[anomalies].get(flag, 0) + 1

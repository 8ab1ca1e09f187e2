"""inspect is the restore walk in inspect mode: it must agree with restore on every image."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_checks import build_its_state
from strategies import WORD_MUTATIONS, mutate_word, table_starts

from gictools import entries as E
from gictools import regs as R
from gictools.errors import ImageError
from gictools.image import dump_image, load_image_bytes
from gictools.saverestore import inspect_image

SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


build = build_its_state


@st.composite
def its_states(draw):
    vcpus, ncoll = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    indirect = draw(st.booleans())
    devs = draw(st.lists(st.integers(0, 300), max_size=4, unique=True))
    plan = []
    for d in devs:
        bits = draw(st.integers(1, 16))
        eids = draw(st.lists(st.integers(0, min(1 << bits, 48) - 1), max_size=5, unique=True))
        # one collection per INTID: restore keeps the first ITE's target, as MAPTI does
        plan.append((d, bits, [(e, 8192 + e % 24, (e % 24) % ncoll) for e in eids]))
    return vcpus, indirect, ncoll, plan, draw(st.lists(st.integers(8192, 8215), max_size=4))


def restore_outcome(data):
    try:
        load_image_bytes(data)
    except ImageError as e:
        return (e.step, e.errno)
    return None


def check_agreement(data):
    ok, lines = inspect_image(data)
    outcome = restore_outcome(data)
    assert ok == (outcome is None), lines[-3:]
    if outcome is not None:
        step, errno = outcome
        fails = [ln for ln in lines if ln.startswith("restore: FAILS")]
        assert fails and f"step {step}:" in fails[0] and R.error_name(errno) in fails[0]
    return ok, lines


@SETTINGS
@given(its_states(), st.data())
def test_inspect_agrees_with_restore_on_mutated_images(spec, data):
    vm, its = build(spec)
    assert vm.save_pending_tables() == 0 and its.save_tables() == 0
    targets = table_starts(its)
    for _ in range(data.draw(st.integers(0, 4))):
        gpa = data.draw(st.sampled_from(targets)) + 8 * data.draw(st.integers(0, 64))
        word = vm.memory.read_u64(gpa)
        kind = data.draw(st.sampled_from(WORD_MUTATIONS))
        vm.memory.write_u64(gpa, mutate_word(data, word, kind))
    if data.draw(st.booleans()):
        # a register userspace restores: an unknown ABI revision fails the IIDR step
        its.abi_rev = data.draw(st.sampled_from([0, 0, 1]))
    check_agreement(dump_image(vm, flush=False))


def test_every_problem_is_reported():
    vm, its = build((1, False, 1, [(5, 4, [(0, 8192, 0), (1, 8193, 0), (2, 8194, 0)])], []))
    assert vm.save_pending_tables() == 0 and its.save_tables() == 0
    itt = its.devices[5].itt_addr
    vm.memory.write_u64(itt + 8, E.pack_ite(1, 100, 0))  # pINTID < 8192
    vm.memory.write_u64(itt + 16, E.pack_ite(0, 8194, 7))  # no collection 7
    ok, lines = check_agreement(dump_image(vm, flush=False))
    bad = [ln for ln in lines if "MALFORMED" in ln]
    assert not ok and len(bad) == 2
    assert f"MALFORMED at {itt + 8:#x}" in bad[0] and "-EINVAL" in bad[0]
    assert f"MALFORMED at {itt + 16:#x}" in bad[1] and "ICID 7" in bad[1]
    assert lines[-1] == "2 malformed entries"
    assert sum("(-EINVAL)" in ln for ln in lines if ln.startswith("restore:")) == 1


def test_selftest_shaped_images_inspect_clean(tmp_path):
    """The bundled lpi-stress traces' images: restore accepts them, so does inspect; their
    16-bit ITTs in 64 KiB steps overlap each other, which is only noted."""
    from pathlib import Path

    from gictools.image import save_image
    from gictools.replay import Replayer

    trace = Path(__file__).resolve().parents[2] / "traces" / "lpi-stress-v4-d4-e8-fixed.msgpack"
    rp = Replayer(trace, ["default"])
    rp.run()
    img = tmp_path / "s.img"
    save_image(rp.runs[0].vm, img)
    ok, lines = check_agreement(img.read_bytes())
    assert ok and lines[-1] == "0 malformed entries"
    notes = [ln for ln in lines if "note:" in ln and "overlaps" in ln]
    assert len(notes) >= 3 and all("ITT of device" in n for n in notes)

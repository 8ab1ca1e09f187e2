"""The model against the real kernels' recorded answers (fixtures/kvm-answers/), no boot.

Every case of the corpus runs through the model at the version the kernel reported
(6.1.192, 6.12.118); every answer must equal the kernel's. A disagreement is reported with
its case id, op index and op; the ones of a documented open class (KNOWN_OPEN, see
docs/kvm-check.md) are counted apart, and a class that no longer occurs fails the test so the
list only shrinks. Regenerate the corpus: python -m gictools.kvm.nested --corpus.
"""

from pathlib import Path

import pytest

from gictools.kvm import compare, corpus
from gictools.kvm import model as M
from gictools.model.commands import decode_command

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "kvm-answers"
ANSWER_FILES = sorted(p for p in FIXTURES.glob("*.msgpack.gz") if p.name != corpus.CASES_FILE)
MAX_REPORTED = 300  # disagreement lines in a failure message (the count is always given)


def _commands(case):
    """Mnemonic and fields of every command the case queues: `cmd` lines and the command-queue
    slots an image writes (a restored ITS re-runs them when CREADR != CWRITER)."""
    out = []
    size = corpus.QUEUE_PAGES * 4096
    queue = bytearray(size)
    for ln in case.lines:
        if ln.startswith("cmd "):
            out.append(decode_command(bytes.fromhex(ln[4:])))
        elif ln.startswith("memw "):
            _, gpa, data = ln.split()
            off, raw = int(gpa, 16) - corpus.QUEUE, bytes.fromhex(data)
            lo, hi = max(off, 0), min(off + len(raw), size)
            if lo < hi:
                queue[lo:hi] = raw[lo - off : hi - off]
    for slot in range(0, size, 32):
        if any(queue[slot : slot + 32]):
            out.append(decode_command(bytes(queue[slot : slot + 32])))
    return out


def _is_table_read(line):
    return line.startswith("memr ") and int(line.split()[1], 16) >= corpus.DEVT


def _is_pending_read(line):
    return line.startswith("memr ") and corpus.PEND <= int(line.split()[1], 16) < corpus.DEVT


def _after_failed_restore(case, i, k, m):
    r = [j for j, ln in enumerate(case.lines[:i]) if ln == "restore"]
    return bool(r) and k[r[0]] != "0" and k[r[0]] == m[r[0]]


def _after_save_einval(case, i, k, m):
    return any(
        ln == "save" and k[j] != "-22" and m[j] == "-22" for j, ln in enumerate(case.lines[: i + 1])
    )


def _after_cmd(case, i, prefix):
    """Does a line starting with prefix come after the first queued command and before op i?"""
    first = next((j for j, ln in enumerate(case.lines) if ln.startswith("cmd ")), None)
    return first is not None and any(ln.startswith(prefix) for ln in case.lines[first:i])


# Open disagreement classes, each documented in docs/kvm-check.md ("Known-open disagreements"):
# name -> (kernel versions it applies to, predicate on (case, op index, kernel answers, model
# answers) that claims one differing answer). The semantics work removes them one by one; the
# test fails when a class no longer occurs, so the list only shrinks.
KNOWN_OPEN = {
    # vgic_mmio_read_v3r_ctlr also reports GICR_CTLR.CES and .IR (bits 1, 2): 0x6 / 0x7
    "gicr-ctlr-ces-ir": (
        ("6.1", "6.12"),
        lambda c, i, k, m: (
            c.lines[i].split()[:1] == ["rd_r"]
            and c.lines[i].split()[2] == "0"
            and k[i] in ("=6", "=7")
        ),
    ),
    # SAVE_TABLES with ITEs whose collection is gone (MAPC V=0, or GITS_BASER1 rewritten):
    # KVM saves a zero ITE and goes on, the model returns -EINVAL; the tables read back differ
    "save-ite-without-collection": (
        ("6.1", "6.12"),
        lambda c, i, k, m: (
            (c.lines[i] == "save" or _is_table_read(c.lines[i]))
            and _after_save_einval(c, i, k, m)
            and (
                any(n == "MAPC" and not f.get("V") for n, f in _commands(c))
                or _after_cmd(c, i, "its_w 108 ")
            )
        ),
    ),
    # 6.12: any write to GITS_BASER0/1 (not only Valid 1 -> 0) frees all devices or
    # collections; the model keeps them unless Valid goes 1 -> 0
    "baser-write-frees-6.12": (
        ("6.12",),
        lambda c, i, k, m: (
            (_after_cmd(c, i, "its_w 100 ") or _after_cmd(c, i, "its_w 108 "))
            and c.lines[i].split()[0] in ("msi", "save", "memr")
        ),
    ),
    # 6.12: SAVE_TABLES skips a device whose level-1 device-table entry the guest zeroed and
    # returns 0; the model returns -EINVAL
    "save-skips-zeroed-l1-6.12": (
        ("6.12",),
        lambda c, i, k, m: (
            (c.lines[i] == "save" or _is_table_read(c.lines[i]))
            and _after_cmd(c, i, f"memw {corpus.DEVT:x} ")
        ),
    ),
    # the model has no distributor (GICD_CTLR): every answer of a case that enables it
    "distributor": (
        ("6.1", "6.12"),
        lambda c, i, k, m: any(ln.startswith("dist_") for ln in c.lines),
    ),
    # a failed RESTORE_TABLES leaves the pending bits it consumed cleared in guest memory
    # (and frees what it restored); the model rolls the whole restore back
    "failed-restore-not-rolled-back": (
        ("6.1", "6.12"),
        lambda c, i, k, m: _is_pending_read(c.lines[i]) and _after_failed_restore(c, i, k, m),
    ),
    # 6.12: MOVALL moves only the source vCPU's LPIs; the model moves every LPI
    "movall-all-lpis-6.12": (
        ("6.12",),
        lambda c, i, k, m: (
            (_is_pending_read(c.lines[i]) or _is_table_read(c.lines[i]))
            and any(n == "MOVALL" for n, _ in _commands(c))
        ),
    ),
}


@pytest.fixture(scope="module")
def cases():
    return corpus.load_cases(FIXTURES / corpus.CASES_FILE)


def _applies(name, kernel):
    return any(kernel == k or kernel.startswith(k + ".") for k in KNOWN_OPEN[name][0])


def _classify(kernel, case, i, k, m):
    for name, (_kernels, pred) in KNOWN_OPEN.items():
        if _applies(name, kernel) and pred(case, i, k, m):
            return name
    return None


@pytest.mark.parametrize("path", ANSWER_FILES, ids=[p.name for p in ANSWER_FILES])
def test_model_agrees_with_recorded_kernel(path, cases):
    kernel, answers = corpus.load_answers(path)
    assert set(answers) == {c.case_id for c in cases}, f"{path.name}: not the corpus' cases"
    model = M.run_cases(cases, kernel)
    unexplained, known = [], dict.fromkeys(KNOWN_OPEN, 0)
    for case, got in zip(cases, model):
        k = answers[case.case_id]
        if k == got:
            continue
        for line, i in zip(compare.diff_case(case, k, got), compare.diff_indexes(case, k, got)):
            cls = _classify(kernel, case, i, k, got)
            if cls is None:
                unexplained.append(f"{kernel}: {line}")
            else:
                known[cls] += 1
    n_answers = sum(len(a) for a in answers.values())
    shown = "\n".join(unexplained[:MAX_REPORTED])
    assert not unexplained, (
        f"{kernel}: {len(unexplained)} disagreements with the kernel in {len(cases)} cases "
        f"({n_answers} answers):\n{shown}"
    )
    print(f"{kernel}: {len(cases)} cases, {n_answers} answers; known-open answers: {known}")
    stale = [name for name, n in known.items() if not n and _applies(name, kernel)]
    assert not stale, f"{kernel}: known-open classes that no longer occur (remove them): {stale}"


def test_corpus_is_large_and_covers_every_class(cases):
    kinds = {c.kind for c in cases}
    assert len(cases) >= 2000
    assert kinds >= set(corpus.CLASSES)
    assert len(ANSWER_FILES) >= 2  # both kernels recorded

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

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "kvm-answers"
ANSWER_FILES = sorted(p for p in FIXTURES.glob("*.msgpack.gz") if p.name != corpus.CASES_FILE)
MAX_REPORTED = 300  # disagreement lines in a failure message (the count is always given)


# Open disagreement classes, each documented in docs/kvm-check.md ("Known-open
# disagreements"): name -> (kernel versions it applies to, predicate on (case, op index, kernel
# answers, model answers) that claims one differing answer). Empty: the model agrees with both
# kernels on every answer. A class added here must occur (the test fails on a stale one), so
# the list only shrinks; e.g. before the semantics fixes were merged it held
#   "gicr-ctlr-ces-ir": (("6.1", "6.12"), lambda c, i, k, m: c.lines[i].startswith("rd_r ")
#                        and c.lines[i].split()[2] == "0" and k[i] in ("=6", "=7")),
KNOWN_OPEN: dict = {}


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


def test_kernels_differ_where_versions_do(cases):
    """The two recorded kernels answer differently in some cases (6.12's MOVALL, BASER and
    save changes): the corpus reaches version-specific behaviour, so agreeing with both is a
    claim about the version table, not about behaviour common to all kernels."""
    recorded = dict(corpus.load_answers(p) for p in ANSWER_FILES)
    a, b = recorded["6.1.192"], recorded["6.12.118"]
    differ = {c.kind for c in cases if a[c.case_id] != b[c.case_id]}
    assert {"cmds", "baser-change", "l1-zeroed"} <= differ

"""Compare the kernel's answers with the model's, operation by operation: one line each."""

from __future__ import annotations

from gictools.kvm import ops as O

MAX_SHOWN = 120  # characters of an op or an answer shown in a difference line
MAX_WORDS = 4  # differing qwords of a memr shown


def _short(s: str) -> str:
    return s if len(s) <= MAX_SHOWN else s[: MAX_SHOWN - 3] + "..."


def _memr_diff(op: O.Op, kernel: str, model: str) -> str | None:
    k, m = O.memr_words(kernel), O.memr_words(model)
    if k is None or m is None:
        return None
    offs = sorted(o for o in set(k) | set(m) if k.get(o, 0) != m.get(o, 0))
    shown = ", ".join(
        f"{op.args[0] + o:#x}: kernel {k.get(o, 0):#018x} model {m.get(o, 0):#018x}"
        for o in offs[:MAX_WORDS]
    )
    more = f" (+{len(offs) - MAX_WORDS} more)" if len(offs) > MAX_WORDS else ""
    return f"{len(offs)} qwords differ: {shown}{more}"


def diff_case(case: O.Case, kernel: list[str], model: list[str]) -> list[str]:
    """Every difference of one case, as 'case ID (kind) op N `line`: kernel A, model B'."""
    out = []
    for i, text in enumerate(case.lines):
        k = kernel[i] if i < len(kernel) else "<no answer>"
        m = model[i] if i < len(model) else "<no answer>"
        if k == m:
            continue
        where = f"case {case.case_id} ({case.kind}) op {i} `{_short(text)}`"
        detail = None
        if text.startswith("memr "):
            try:
                detail = _memr_diff(O.parse(text), k, m)
            except O.OpError:
                detail = None
        if detail is None:
            detail = f"kernel {_short(k)}, model {_short(m)}"
        out.append(f"{where}: {detail}")
    return out


def diff_indexes(case: O.Case, kernel: list[str], model: list[str]) -> list[int]:
    """The op indexes diff_case reports, in the same order."""
    n = len(case.lines)
    pad = ["<no answer>"] * n
    return [i for i, (k, m) in enumerate(zip(kernel + pad, model + pad)) if i < n and k != m]


def diff_all(cases: list[O.Case], kernel: list[list[str]], model: list[list[str]]) -> list[str]:
    out = []
    for c, k, m in zip(cases, kernel, model, strict=True):
        out.extend(diff_case(c, k, m))
    return out

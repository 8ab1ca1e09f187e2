"""The recorded-answers corpus files: generated cases and one kernel's answers, gzipped msgpack.

Formats (fixtures/kvm-answers/):

    cases.msgpack.gz          {"format": "gictools-kvm-cases", "version": 1, "seed": S,
                               "cases": [[case_id, kind, script_text], ...]}
    KERNEL.msgpack.gz         {"format": "gictools-kvm-answers", "version": 1, "kernel":
                               "6.1.192", "uname": ..., "answers": [[case_id, answers_text], ...]}
"""

from __future__ import annotations

import gzip
from pathlib import Path

import msgpack

from gictools.errors import GictoolsError
from gictools.kvm import ops as O

CASES_FORMAT, ANSWERS_FORMAT, FORMAT_VERSION = "gictools-kvm-cases", "gictools-kvm-answers", 1
CASES_FILE = "cases.msgpack.gz"
MAX_FILE = 64 << 20  # bytes of a decompressed corpus file


class CorpusError(GictoolsError):
    """A corpus file is missing, malformed or does not match the cases."""


def _dump(path: Path, obj: object) -> None:
    data = gzip.compress(msgpack.packb(obj, use_bin_type=True), compresslevel=9, mtime=0)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _load(path: Path, fmt: str) -> dict:
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read(MAX_FILE + 1)
    except (OSError, EOFError) as e:
        raise CorpusError(f"{path}: {e}") from None
    if len(raw) > MAX_FILE:
        raise CorpusError(f"{path}: more than {MAX_FILE} bytes decompressed")
    try:
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated types for bad input
        raise CorpusError(f"{path}: not msgpack ({e})") from None
    if (
        not isinstance(obj, dict)
        or obj.get("format") != fmt
        or obj.get("version") != FORMAT_VERSION
    ):
        raise CorpusError(f"{path}: not a {fmt} v{FORMAT_VERSION} file")
    return obj


def save_cases(path: Path, cases: list[O.Case], seed: int) -> None:
    _dump(
        path,
        {
            "format": CASES_FORMAT,
            "version": FORMAT_VERSION,
            "seed": seed,
            "cases": [[c.case_id, c.kind, "\n".join(c.lines)] for c in cases],
        },
    )


def load_cases(path: Path) -> list[O.Case]:
    obj = _load(path, CASES_FORMAT)
    try:
        return [O.Case(int(i), str(k), str(s).split("\n")) for i, k, s in obj["cases"]]
    except (KeyError, TypeError, ValueError) as e:
        raise CorpusError(f"{path}: malformed cases ({e})") from None


def save_answers(
    path: Path, kernel: str, uname: str, cases: list[O.Case], answers: list[list[str]]
) -> None:
    _dump(
        path,
        {
            "format": ANSWERS_FORMAT,
            "version": FORMAT_VERSION,
            "kernel": kernel,
            "uname": uname,
            "answers": [[c.case_id, "\n".join(a)] for c, a in zip(cases, answers, strict=True)],
        },
    )


def load_answers(path: Path) -> tuple[str, dict[int, list[str]]]:
    obj = _load(path, ANSWERS_FORMAT)
    try:
        return str(obj["kernel"]), {int(i): str(a).split("\n") for i, a in obj["answers"]}
    except (KeyError, TypeError, ValueError) as e:
        raise CorpusError(f"{path}: malformed answers ({e})") from None

"""The processes below a process, read from Linux /proc: what the signal tests (tests/procs/,
bench/fuzz_campaign.py) look for to stop a worker and to check that none is left."""

import os


def _state_ppid(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process, None once it is gone. The name field in
    parentheses may hold spaces and ")", so the fields are read after its last ")"."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Not gone and not a zombie (a zombie has ended; only its parent's wait is missing)."""
    sp = _state_ppid(pid)
    return sp is not None and sp[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    """The live (non-zombie) children of pid."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            sp = _state_ppid(int(d))
            if sp is not None and sp[1] == pid and sp[0] not in ("Z", "X"):
                out.append(int(d))
    return out


def below(pid: int, depth: int) -> list[int]:
    """The live processes exactly `depth` generations below pid (1: its children)."""
    level = [pid]
    for _ in range(depth):
        level = [c for p in level for c in children(p)]
    return level


def descendants(pid: int) -> list[int]:
    """Every live process below pid, at any depth."""
    todo, seen = [pid], []
    while todo:
        for c in children(todo.pop()):
            seen.append(c)
            todo.append(c)
    return seen

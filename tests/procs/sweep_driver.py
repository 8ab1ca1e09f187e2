"""A sweep driver for tests/procs: two real replay cells and one whose trace is a FIFO
nobody writes (its worker blocks in open(), so a test can kill or stop it). Prints the
results as JSON; stopped by a signal, it exits as the CLI does."""

import dataclasses
import json
import sys

from gictools.sweep.grid import cells_from_args
from gictools.sweep.run import run_sweep


def main():
    trace, fifo, out = sys.argv[1:4]
    cells = cells_from_args([trace], ["none", "lru-v6.8"])
    stuck = dataclasses.replace(cells[0], trace=fifo.rsplit("/", 1)[-1], trace_path=fifo)
    try:
        r = run_sweep([*cells, stuck], out, jobs=3)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    print(json.dumps({p: [v["status"], v.get("error")] for p, v in r.results.items()}))


if __name__ == "__main__":  # the fork server imports this file as __mp_main__
    main()

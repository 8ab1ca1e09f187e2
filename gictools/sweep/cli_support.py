"""The sweep command's logic, kept out of cli.py: build the grid, run it, format the result."""

from gictools.cli import kit
from gictools.errors import ConfigError
from gictools.sweep.grid import cells_from_args, cells_from_toml, check_unique
from gictools.sweep.report import ProgressDisplay, failures, sweep_json, sweep_table
from gictools.sweep.run import run_sweep

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def plan(traces, caches, kernels, presets, preset_files, grid, host_cpus):
    """The cells of a command-line grid and/or a grid file."""
    if host_cpus is not None and host_cpus < 1:
        raise ConfigError(f"--host-cpus {host_cpus}: must be >= 1")
    cells = []
    if grid is not None:
        if caches or kernels or presets or preset_files:
            raise ConfigError("--grid carries its own axes: give --cache/--kernel/--preset there")
        cells += cells_from_toml(grid, host_cpus)
    if traces or grid is None:
        cells += cells_from_args(
            traces or [], caches or [], kernels or [], presets or [], preset_files or [], host_cpus
        )
    if not cells:
        raise ConfigError("the grid is empty")
    return check_unique(cells)


def run(cells, out, jobs, scheduler, json_out, quiet):
    """(exit code, [stdout text, stderr lines...]): 0 all cells finished, 1 a replay's
    expectation failed, 2 a cell failed (its error listed), 130 interrupted."""
    try:
        with ProgressDisplay(None if not quiet else False) as prog:
            result = run_sweep(cells, out, jobs=jobs, scheduler=scheduler, progress=prog)
    except KeyboardInterrupt as e:
        result = getattr(e, "result", None)
        if result is None:
            raise
        msg = (
            f"interrupted: {result.count('done') + result.count('skipped')} of "
            f"{len(cells)} cells finished; run the same command again to resume"
        )
        return EXIT_INTERRUPTED, [_text(result, json_out), *_warnings(result), msg]
    text = _text(result, json_out)
    errs = _warnings(result) + failures(result)
    if failures(result):
        return EXIT_BAD_INPUT, [text, *errs]
    failed_checks = [
        p for p, r in result.results.items() if (r.get("row") or {}).get("failed_expectations")
    ]
    lines = [f"FAILED expectations in {p}" for p in sorted(failed_checks)]
    return (EXIT_CHECK_FAILED if failed_checks else EXIT_OK), [text, *errs, *lines]


def _warnings(result):
    return [f"warning: {w}" for w in result.warnings]


def _text(result, json_out):
    """The table, or the `gictools.sweep/1` document (docs/cli-json.md) as every verb prints
    JSON: schema-tagged, numpy values converted, never a bare NaN."""
    if not json_out:
        return sweep_table(result)
    return kit.to_json(kit.json_doc("sweep", **sweep_json(result)))

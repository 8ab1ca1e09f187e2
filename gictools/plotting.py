"""What every plotting verb shares: matplotlib on demand, PNGs written whole or not at all.

matplotlib is the optional 'plot' extra; it is imported only when a plot is drawn, and
the CLI checks for it (need_matplotlib) before the work, not after.
"""

from pathlib import Path

from gictools.errors import ConfigError
from gictools.outputs import AtomicOutput

MISSING = "--plot needs matplotlib: pip install 'gictools[plot]'"


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend; ConfigError if not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(MISSING) from None
    return plt


def outdir(path) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def save(fig, path: Path, files: list, **savefig) -> None:
    """Write fig as a PNG at path atomically, close it, and append path to files."""
    import matplotlib.pyplot as plt

    try:
        with AtomicOutput(path) as out:
            fig.savefig(out.file, format="png", **savefig)
    finally:
        plt.close(fig)
    files.append(path)

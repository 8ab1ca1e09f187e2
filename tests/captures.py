"""The bundled QEMU captures (fixtures/qemu, fixtures/kut) as import_qemu's inputs."""

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def capture_inputs(directory: Path, name: str) -> dict:
    """import_qemu's cmdq/lpiprop/cmdline keyword arguments for capture `name`."""
    return dict(
        cmdq=directory / f"{name}.cmdq.txt",
        lpiprop=directory / f"{name}.lpiprop.txt",
        cmdline=directory / f"{name}.cmdline.txt",
    )

"""The gictools command line: parse, call the library, print. No model logic here.

One module per group of verbs, each exposing register(app); a verb from elsewhere in the
package (gictools/kvm/cli.py, say) is one more line in VERB_MODULES. Verb modules import
only typer and gictools.cli at module level: each command imports what it needs, so
`gictools --help` starts fast.
"""

import importlib
from typing import Annotated

import typer

from gictools import __version__
from gictools.cli import kit
from gictools.cli.usage import RootGroup

# --help lists the verbs in this order (a module's own verbs in its register order)
VERB_MODULES = (
    "gictools.cli.replay",
    "gictools.cli.traces",
    "gictools.cli.images",
    "gictools.cli.analysis",
    "gictools.cli.sweeps",
    "gictools.kvm.cli",
    "gictools.trace.kvm.cli",
)


def _version_callback(value: bool):
    if value:
        kit.echo(f"gictools {__version__}")
        raise typer.Exit()


app = typer.Typer(
    cls=RootGroup,
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Model, record, replay and save/restore KVM's virtual GICv3 ITS.",
)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_version_callback,
            is_eager=True,
            help="print the version and exit",
        ),
    ] = False,
):
    """Model, record, replay and save/restore KVM's virtual GICv3 ITS."""


def group(parent: typer.Typer, name: str, help: str) -> typer.Typer:
    """The sub-command group `gictools NAME` (gen, import, predict, ...), made on first use,
    so that modules can add verbs to one group: group(app, "import", ...).command("kvm")."""
    for g in parent.registered_groups:
        if g.name == name and g.typer_instance is not None:
            return g.typer_instance
    sub = typer.Typer(no_args_is_help=True, help=help)
    parent.add_typer(sub, name=name)
    return sub


for _name in VERB_MODULES:
    importlib.import_module(_name).register(app)

"""How the command line reads: usage errors as one line, help without type-hint metavars,
the verb list as one-line summaries. typer's defaults print a framed box with pydantic's
wording ("Input should be greater than or equal to 1") and `<list[Path]>`; every verb,
wherever registered, gets these rules through the root group below."""

import os
import re
import sys
from typing import Any

import typer
from typer._click import exceptions as click_exc
from typer.core import TyperArgument, TyperGroup, TyperOption

from gictools.cli.files import isatty

# pydantic's error types (typer validates parameters with TypeAdapters) as plain words
_WORDS = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "int_parsing": "not an integer",
    "int_from_float": "not an integer",
    "float_parsing": "not a number",
}


def _param_name(param: Any) -> str:
    if param is None:
        return ""
    if isinstance(param, TyperArgument):
        return (param.name or "").upper()
    longs = [o for o in param.opts if o.startswith("--")]
    return (longs or param.opts or [param.name or ""])[0]


def _cause_text(e: click_exc.BadParameter) -> tuple[Any, str] | None:
    """(value given, what is wrong with it) from the pydantic ValidationError behind a
    typer BadParameter, in plain words."""
    cause = e.__cause__
    if cause is None or not hasattr(cause, "errors"):
        return None
    try:
        err = cause.errors()[0]
    except Exception:
        return None
    ctx = err.get("ctx") or {}
    if err.get("type") == "value_error" and "error" in ctx:
        return None, str(ctx["error"]).rstrip(".")
    words = _WORDS.get(err.get("type", ""))
    text = words.format(**ctx) if words else str(err.get("msg", "")).rstrip(".")
    return err.get("input"), text


def message(e: click_exc.ClickException) -> str:
    """The error in one line: what was wrong, naming the option or argument."""
    if isinstance(e, click_exc.MissingParameter) and e.param is not None:
        kind = "argument" if isinstance(e.param, TyperArgument) else "option"
        return f"missing {kind} {_param_name(e.param)}"
    if isinstance(e, click_exc.BadParameter):
        hint = _param_name(e.param) or (e.param_hint if isinstance(e.param_hint, str) else "")
        given, text = _cause_text(e) or (None, e.message)
        if given is not None:
            hint = f"{hint} {given}".strip()
        return f"{hint}: {text}" if hint else text
    if isinstance(e, click_exc.NoSuchOption):
        return e.message  # not typer's "(Possible options: ...)" list
    return " ".join(e.format_message().split())


def report(e: click_exc.ClickException) -> None:
    """`gictools: error: ...` on stderr, one line; on a terminal, where to find help."""
    text = message(e).replace("\n", " ")
    typer.echo(f"gictools: error: {text}", err=True)
    ctx = getattr(e, "ctx", None)
    if ctx is not None and isatty(sys.stderr):
        typer.echo(f"Try '{ctx.command_path} --help'.", err=True)


def _usage_name(self: TyperArgument) -> str:
    name = (self.metavar or self.name or "").upper()
    if self.nargs != 1:
        name += "..."
    return name if self.required else f"[{name}]"


def _type_label(self: Any, ctx: Any) -> str | None:
    """An option's value in --help: none for a flag, the element for a repeatable option
    (`<path>`, `<none|lru-v6.8|...>`), else typer's `<int>`, `<path>`, `<str>`."""
    if self.metavar is not None:
        return self.metavar
    if getattr(self, "is_flag", False) or getattr(self, "is_bool_flag", False):
        return None
    label = TyperOption.display_type(self, ctx)
    m = re.fullmatch(r"<list\[(.*)\]>", label)
    if m:
        inner = m.group(1)
        label = f"<{inner.lower()}>" if inner in ("Path", "str", "int") else f"<{inner}>"
    return label


class _Argument(TyperArgument):
    _usage_display_name = _usage_name

    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the name says it (TRACES...); the help says what it is

    def _rich_display_name(self) -> str:
        return _usage_name(self).strip("[]")


class _Option(TyperOption):
    display_type_rich = _type_label


def _summary(help_text: str | None) -> str | None:
    """A verb's line in the verb list: its docstring's first sentence."""
    if not help_text:
        return None
    first = " ".join(help_text.split("\n\n")[0].split())
    m = re.match(r"(.+?[.;])(\s|$)", first)
    return (m.group(1) if m else first).rstrip(".;")


def _tidy_param(p: Any) -> Any:
    if type(p) is TyperArgument:
        p.__class__ = _Argument
    elif type(p) is TyperOption:
        p.__class__ = _Option
    return p


def _tidy(cmd: Any) -> None:
    """cmd and every command below it: its params' help display, its one-line summary."""
    for p in getattr(cmd, "params", []):
        _tidy_param(p)
    made = cmd.get_help_option  # --help is made on first use: tidy it then

    def help_option(ctx: Any) -> Any:
        opt = made(ctx)
        return None if opt is None else _tidy_param(opt)

    cmd.get_help_option = help_option
    if cmd.short_help is None:
        cmd.short_help = _summary(cmd.help)
    for sub in getattr(cmd, "commands", {}).values():
        _tidy(sub)


class RootGroup(TyperGroup):
    """The `gictools` group: tidies every verb's help, reports usage errors in one line."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        _tidy(self)

    def get_params(self, ctx: Any) -> list:
        return [_tidy_param(p) for p in super().get_params(ctx)]  # with typer's completion

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        if sys.stdout is None:  # `>&-`: every verb writes there (its result, or `-o -`)
            typer.echo("gictools: error: stdout is closed: nowhere to write", err=True)
            sys.exit(2)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click_exc.NoArgsIsHelpError as e:
            sys.exit(e.exit_code)  # the help is printed already
        except click_exc.ClickException as e:
            report(e)
            sys.exit(e.exit_code)
        except typer.Abort:
            typer.echo("gictools: aborted", err=True)
            sys.exit(1)
        except OSError as e:  # outside a verb's own error edge: writing its help, say
            from gictools.cli import kit

            kit._stdout_to_devnull()
            where = "stdout" if e.filename is None else os.fsdecode(e.filename)
            typer.echo(f"gictools: error: {where}: {e.strerror or e}", err=True)
            sys.exit(2)
        sys.exit(rv if isinstance(rv, int) else 0)

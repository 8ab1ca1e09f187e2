"""Reading a user's file whole: its SHA-256 and TOML documents, with one-line errors.

One place for each (a trace's hash in replay metadata and sweep plans; preset files and
sweep grids), so that the rules and messages cannot drift apart.
"""

import hashlib
import tomllib
from pathlib import Path

from gictools.errors import ConfigError


def file_sha256(path) -> str:
    """The file's SHA-256 (hex), read in chunks (hashlib.file_digest)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def parse_toml(text: str, src: str) -> dict:
    """A TOML document; ConfigError naming src when it is not one."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{src}: not a TOML file: {e}") from None
    except RecursionError:  # tomllib recurses per nested array/table
        raise ConfigError(f"{src}: nested too deeply") from None


def read_toml(path) -> dict:
    """A TOML file; ConfigError naming it when it cannot be read or is not TOML (UTF-8)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start})") from None
    return parse_toml(text, str(p))

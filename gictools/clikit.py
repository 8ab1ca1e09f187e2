"""Moved to the gictools.cli package (kit, files, options, progress); this alias keeps code
written against the old module importing while branches merge. New code: gictools.cli.*."""

from gictools.cli.files import *  # noqa: F403
from gictools.cli.kit import *  # noqa: F403
from gictools.cli.options import *  # noqa: F403
from gictools.cli.progress import *  # noqa: F403

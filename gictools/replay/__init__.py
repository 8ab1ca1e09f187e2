"""The replay: one streaming pass over a trace, one model VM per cache policy.

Each record goes to every policy's VM in trace order (replayer). MSI blocks of
SCALAR_MAX events or more take the block path (block: gictools.model.block);
shorter ones (an imported trace has one MSI per record) and everything else take
the per-event path (scalar, records). Each policy's rows go to its own sink,
which writes them to Parquet in row groups of their own; expectations are
checked as they come (expect). runner replays several traces into one file;
jobs runs the policies in parallel processes.

Layers: replay sits on the model (gictools.model) and the model of time
(gictools.latency); the analysis verbs (gictools.analysis) sit on replay.
"""

from gictools.latency.model import LatencyModel
from gictools.replay.expect import check_expectation
from gictools.replay.replayer import Replayer, TraceSource
from gictools.replay.report import PolicyReport
from gictools.replay.runner import open_replayers, replay, run_replayers

__all__ = [
    "LatencyModel",
    "PolicyReport",
    "Replayer",
    "TraceSource",
    "check_expectation",
    "open_replayers",
    "replay",
    "run_replayers",
]

"""Trace layer: canonical job tables, loaders for public DL-cluster traces, a synthetic
generator (the embedded default), windows, cluster specs and the model throughput table."""

from traces import clusters, models
from traces.clusters import ClusterSpec
from traces.loaders import FORMATS, detect_format, load_trace, save_trace
from traces.schema import COLUMNS, LoadReport, TraceError, make_trace, validate
from traces.synthetic import synthetic
from traces.windows import offered_load, window

__all__ = [
    "COLUMNS",
    "FORMATS",
    "ClusterSpec",
    "LoadReport",
    "TraceError",
    "clusters",
    "detect_format",
    "load_trace",
    "make_trace",
    "models",
    "offered_load",
    "save_trace",
    "synthetic",
    "validate",
    "window",
]

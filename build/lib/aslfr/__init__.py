"""aslfr: an experiment-tracking sweep harness for ASL fingerspelling recognition."""

__version__ = "0.1.0"

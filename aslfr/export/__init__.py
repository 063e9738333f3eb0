"""Stage 3, export: the model as the competition ran it, and what it costs.

    convert      TFLite with the preprocessing inside (`aslfr-export RUN_DIR`)
    budget       latency and size in the LiteRT interpreter against budget.*, the probe
    competition  the export scored by the competition's rules alone

Imports aslfr.model and aslfr.data, never the training loop.
"""

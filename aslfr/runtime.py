"""The process around the harness: TensorFlow's and LiteRT's start-up lines kept off the terminal.

Importing TensorFlow (and its first look for a GPU) prints C++ log lines a user cannot act on:
"oneDNN custom operations are on", "Could not find cuda drivers", and on machines without a GPU
"failed call to cuInit: ... UNKNOWN ERROR (303)" at error level, which reads as a failure; each
LiteRT interpreter announces its XNNPACK delegate. Most of them are printed before absl's logging
is initialized, so TF_CPP_MIN_LOG_LEVEL alone does not hide them. Unless the user sets
TF_CPP_MIN_LOG_LEVEL (then everything is shown as TensorFlow prints it), `quiet()` holds back
those known lines (and only those) while the block runs; `import_tensorflow` imports TensorFlow
inside it with TF_CPP_MIN_LOG_LEVEL=2.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

START_UP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|"
    r"Could not find cuda drivers|failed call to cuInit|cudart_stub|"
    r"This TensorFlow binary is optimized to use available CPU instructions|"
    r"To enable the following instructions|Unable to register cu(DNN|FFT|BLAS) factory|"
    r"computation placer already registered|TF-TRT Warning|"
    r"Created TensorFlow Lite XNNPACK delegate"
)
USER_CHOSE = "TF_CPP_MIN_LOG_LEVEL" in os.environ  # at start-up, before import_tensorflow sets it


@contextmanager
def quiet() -> Iterator[None]:
    """Run the block with the C++ start-up lines of START_UP_NOISE held back from stderr (file
    descriptor 2, where they are written directly); every other line is passed on after it."""
    if USER_CHOSE:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                if not START_UP_NOISE.search(line):
                    sys.stderr.write(line)


def import_tensorflow():
    """`import tensorflow` and its device discovery (where cuInit runs), quietly; returns it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
    return tf

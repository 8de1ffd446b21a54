# One process-wide TensorFlow import per test process, before any test module's, through the same
# filter the CLI uses: TensorFlow's C++ start-up lines go, any other stderr line is replayed.
from trainkit.quiet import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402, F401

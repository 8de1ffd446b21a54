# One process-wide TensorFlow import per test process, before any test module's, through the same
# filter the CLI uses: TensorFlow's C++ start-up lines go, any other stderr line is replayed.
from trainkit.quiet import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402, F401
from hypothesis import settings  # noqa: E402

# No example database: it was written to .hypothesis/ in the working directory (the repository),
# and replaying its saved examples made one checkout's runs differ from another's.
settings.register_profile("trainkit", database=None)
settings.load_profile("trainkit")

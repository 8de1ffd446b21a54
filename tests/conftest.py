import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: F401  (one process-wide TensorFlow/Keras import, after the log level)

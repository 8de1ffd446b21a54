"""Callbacks: small classes with Keras-like hooks, called between compiled calls."""

from trainkit.callbacks.base import EVENTS, Callback, CallbackList
from trainkit.callbacks.early_stopping import EarlyStopping
from trainkit.callbacks.keras_callbacks import KerasCallback

__all__ = ["EVENTS", "Callback", "CallbackList", "EarlyStopping", "KerasCallback"]

"""Reads the outputs of layers a model's graph does not expose, while a trainkit step traces.

A Sequential or Functional model's own layers are tapped from its graph (:mod:`trainkit.probes`),
but the layers *inside* a nested model, a custom block layer or a subclassed model exist only
while their parent's ``call`` runs. Keras has no forward hooks, so :class:`LayerHooks` installs
one: for the duration of a trace it replaces each such layer's ``call`` (on the instance, not the
class) by a wrapper that hands the output to the tracing thread's :class:`Recording`, and puts the
original back afterwards. Outside a recording the wrapper only calls through; nothing of it is
left on the layers once no trace needs it, so the model is saved, copied and called as before.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import keras
import tensorflow as tf

_MISSING = object()
_lock = threading.Lock()  # guards _installed: MirroredStrategy traces its replicas in threads
_installed: dict[int, list[Any]] = {}  # id(layer) -> [layer, traces using it, the instance's own call]
_local = threading.local()


@dataclasses.dataclass
class Recording:
    """What hooked layers output during one trace of a forward pass, in call order.

    Attributes:
        graph: The graph being traced (``None`` when running eagerly): an output made in
            another graph (a ``while_loop`` body of a recurrent layer, a ``cond`` branch, Keras's
            scratch graph for output shapes) cannot be used by the step and is left out.
        outputs: ``(layer, output)`` of each hooked call, in the order the calls ran.
        layers: ``id()`` of the layers this recording reads: a layer hooked for another thread's
            recording (another model sharing it, traced at the same time) is left out.
    """

    graph: Any
    outputs: list[tuple[Any, tf.Tensor]] = dataclasses.field(default_factory=list)
    layers: frozenset[int] = frozenset()

    def add(self, layer: Any, output: Any) -> None:
        if id(layer) not in self.layers:
            return
        if not isinstance(output, tf.Tensor) or isinstance(output, keras.KerasTensor):
            return
        if self.graph is not None and getattr(output, "graph", None) is not self.graph:
            return
        self.outputs.append((layer, output))


def _hooked(layer: Any, call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call)
    def hooked_call(*args: Any, **kwargs: Any) -> Any:
        output = call(*args, **kwargs)
        recording = getattr(_local, "recording", None)
        if recording is not None:
            recording.add(layer, output)
        return output

    return hooked_call


class LayerHooks:
    """Records the outputs of a fixed set of layers during :meth:`recording` blocks.

    Args:
        layers: The layers to hook (each once, however many times the model calls it).
    """

    def __init__(self, layers: Sequence[Any]) -> None:
        unique = {id(layer): layer for layer in layers}
        self.layers = list(unique.values())

    def __bool__(self) -> bool:
        return bool(self.layers)

    @contextmanager
    def recording(self) -> Iterator[Recording]:
        """Hooks the layers while the block runs and yields what they output in it, this thread's
        calls only (traced in a ``tf.function``: the outputs of that graph only)."""
        graph = None if tf.executing_eagerly() else tf.compat.v1.get_default_graph()
        recording = Recording(graph, layers=frozenset(id(layer) for layer in self.layers))
        previous = getattr(_local, "recording", None)
        _local.recording = recording
        self._install()
        try:
            yield recording
        finally:
            self._uninstall()
            _local.recording = previous

    def _install(self) -> None:
        with _lock:
            for layer in self.layers:
                entry = _installed.get(id(layer))
                if entry is None:
                    own = layer.__dict__.get("call", _MISSING)
                    # object.__setattr__: Keras's own would track the function as layer state.
                    object.__setattr__(layer, "call", _hooked(layer, layer.call))
                    _installed[id(layer)] = [layer, 1, own]
                else:
                    entry[1] += 1

    def _uninstall(self) -> None:
        with _lock:
            for layer in self.layers:
                entry = _installed[id(layer)]
                entry[1] -= 1
                if entry[1]:
                    continue
                del _installed[id(layer)]
                if entry[2] is _MISSING:
                    object.__delattr__(layer, "call")
                else:
                    object.__setattr__(layer, "call", entry[2])

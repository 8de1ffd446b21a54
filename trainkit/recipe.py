"""The YAML recipe: its pydantic schema, and loading a recipe file with ``--set a.b=c`` overrides.

A recipe describes one training run (data, model, loss, optimizer, training and logging options).
Every problem a user can make in a recipe file or an override ends in a
:class:`~trainkit.errors.RecipeError` with a stable ``code`` and a single readable line:

========================  =================================================================
``recipe-not-found``      the file does not exist or cannot be read
``recipe-yaml``           YAML syntax error (line and column given)
``recipe-empty``          the file holds no keys at all
``recipe-unknown-key``    a key the schema does not know (with the closest valid key)
``recipe-invalid-value``  a value of the wrong type or out of range (a misspelt choice with the closest
                          valid one), or a non-mapping file
``bad-override``          a ``--set`` string that cannot be applied
``sweep-needs-compare``   ``train_recipe`` was given a recipe with a ``sweep:`` section
========================  =================================================================

This module deliberately does not import Keras, so listing and validating recipes stays fast; names
of losses, activations and so on are resolved (and rejected) when the model is built.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from trainkit import recipe_overrides
from trainkit.errors import RecipeError, closest_match
from trainkit.recipe_paths import flatten_types, literal_values
from trainkit.recipe_text import describe, one_line, parse_yaml, short, too_big
from trainkit.recipe_validation import to_recipe_error
from trainkit.stat_names import numbered
from trainkit.tasks import Task

Source = Literal["generator", "csv", "npz", "sklearn"]
GeneratorName = Literal["random_labels", "learnable_binary", "learnable_multiclass", "learnable_regression", "random_images"]
SklearnName = Literal["breast_cancer", "digits", "diabetes"]

# Upper bounds keep absurd values (10**30 rows, 1e9 epochs) from reaching numpy or TensorFlow, where
# they would fail with a MemoryError or an int64 overflow instead of a readable RecipeError.
MAX_ROWS = 10_000_000
MAX_ELEMENTS = 200_000_000  # rows x features: 800 MB of float32
MAX_EPOCHS = 1_000_000
MAX_BATCH = 1 << 24
MAX_SEED = 2**32 - 1  # numpy's SeedSequence accepts larger seeds, but TF/Keras seeds are 32-bit
DEFAULT_IMAGE_SHAPE = (32, 32, 3)
# A sweep trains every combination of its values: more than this is a typo or a job for a real
# hyperparameter search, not a side-by-side table.
MAX_VARIANTS = 256
# A recipe is a page of YAML; a file past this is not one (a data file passed by mistake, or a
# device such as /dev/zero that never ends, which was read until memory ran out).
MAX_RECIPE_BYTES = 8 << 20
#: The longest file name (UTF-8 bytes) that common file systems take: a run's name is a folder's.
MAX_NAME_BYTES = 255

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
# "name" or {name: ..., **kwargs}; the kwargs go to the Keras class untouched.
NamedSpec = str | dict[str, Any]


class _Section(BaseModel):
    """Base of every schema model: unknown keys are errors, numbers may fill string fields."""

    # coerce_numbers_to_str: `--set name=2024` or `activation: 1` should be judged as names later
    # (closest-name hints) rather than rejected here as "not a string".
    # ser_json_bytes: a `!!binary` value in builder_args must not break to_yaml().
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, ser_json_bytes="base64")

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        # Pydantic reads true/false as 1/0 for a number: `units: true` built a 1-unit layer and
        # `epochs: true` trained one epoch. A boolean where only a number fits is a typo.
        if isinstance(data, Mapping):
            for key, value in data.items():
                field = cls.model_fields.get(key) if isinstance(key, str) else None
                if isinstance(value, bool) and field is not None and not _takes_booleans(field.annotation):
                    raise ValueError(f"{key} must be a number, got {str(value).lower()}")
        return data


def _takes_booleans(annotation: Any) -> bool:
    """Whether a field's type accepts ``true``/``false`` as themselves (not only as 1/0)."""
    return any(
        any(isinstance(arg, bool) for arg in typing.get_args(t)) if typing.get_origin(t) is Literal else t not in (int, float, type(None))
        for t in flatten_types((annotation,)))


# --------------------------------------------------------------------------------------- data


#: The data keys only some sources read (the others, scales and offsets, apply to every source).
_SOURCE_FIELDS: dict[str, frozenset[str]] = {
    "generator": frozenset({"generator", "rows", "features", "image_shape", "classes", "seed", "feature_distribution", "noise"}),
    "csv": frozenset({"path", "target", "drop"}),
    "npz": frozenset({"path", "x_key", "y_key"}),
    "sklearn": frozenset({"name"}),
}
# The generators that read a generator key (the others ignore it).
_GENERATOR_FIELDS: dict[str, frozenset[str]] = {
    "features": frozenset({"random_labels", "learnable_binary", "learnable_multiclass", "learnable_regression"}),
    "image_shape": frozenset({"random_images"}),
    "classes": frozenset({"random_labels", "learnable_binary", "learnable_multiclass", "random_images"}),
}


class DataConfig(_Section):
    """Where the examples come from, and the deliberate distortions of the failure scenarios."""

    source: Source = "generator"
    generator: GeneratorName = "learnable_binary"
    rows: Annotated[int, Field(ge=1, le=MAX_ROWS)] = 1000
    features: Annotated[int, Field(ge=1, le=1_000_000)] = 10
    image_shape: tuple[PositiveInt, ...] | None = None
    classes: Annotated[int, Field(ge=2, le=100_000)] = 2
    seed: Seed = 0
    feature_distribution: Literal["uniform", "normal"] = "uniform"
    feature_scale: FiniteFloat = 1.0
    feature_offset: FiniteFloat = 0.0
    target_scale: FiniteFloat = 1.0
    target_offset: FiniteFloat = 0.0
    noise: Annotated[FiniteFloat, Field(ge=0.0)] = 0.0
    one_hot: bool = False
    leak_label: bool = False
    per_batch_max_normalize: PositiveInt | None = None
    path: str | None = None
    target: str | None = None
    drop: list[str] = Field(default_factory=list)
    x_key: str = "x"
    y_key: str = "y"
    name: SklearnName | None = None

    @field_validator("image_shape")
    @classmethod
    def _image_rank(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and not 1 <= len(value) <= 4:
            raise ValueError(f"image_shape needs 1 to 4 dimensions such as [32, 32, 3], got {list(value)}")
        return value

    @model_validator(mode="after")
    def _source_needs(self) -> DataConfig:
        if self.source == "csv" and (not self.path or not self.target):
            raise ValueError("a csv source needs both 'path' (the file) and 'target' (the label column)")
        if self.source == "npz" and not self.path:
            raise ValueError("an npz source needs 'path'")
        if self.target is not None and self.target in self.drop:
            raise ValueError(f"drop names the target column '{self.target}'; list only feature columns to leave out")
        if self.source == "sklearn" and self.name is None:
            raise ValueError("an sklearn source needs 'name': breast_cancer, digits or diabetes")
        if self.source == "generator":
            self._check_generated_size()
            if self.generator == "learnable_binary" and self.classes != 2:
                # Its labels are 0/1 whatever classes says: with classes: 3, a class no row had.
                raise ValueError(f"learnable_binary makes 2 classes; for {self.classes} use generator: learnable_multiclass")
            if self.noise > 1 and self.generator != "learnable_regression":
                raise ValueError(f"noise is the fraction of generated labels replaced by random classes, at most 1; got {self.noise:g} "
                                 "(for learnable_regression it is the noise's standard deviation)")
        if self.leak_label and self.is_images:
            raise ValueError("leak_label appends a feature column and cannot be used with random_images")
        return self

    @model_validator(mode="after")
    def _read_by_the_source(self) -> DataConfig:
        # A key only another source reads does nothing here: data.rows: 500 on a csv source looks
        # like it keeps 500 rows, and data.path on a generator looks like the file is read.
        for field in sorted(self.model_fields_set):
            if getattr(self, field) == type(self).model_fields[field].get_default(call_default_factory=True):
                continue  # a whole recipe written back out (a sweep variant) sets every key
            readers = [source for source, fields in _SOURCE_FIELDS.items() if field in fields]
            if readers and self.source not in readers:
                raise ValueError(f"{field} is read only by a {' or '.join(readers)} source, and this one is {self.source}: "
                                 f"remove {field}, or set source: {readers[0]}")
            generators = sorted(_GENERATOR_FIELDS.get(field, ()))
            if self.source == "generator" and generators and self.generator not in generators:
                # classes: 5 on learnable_regression, image_shape on a feature table: ignored in silence.
                raise ValueError(f"{field} is read only by the {', '.join(generators)} generator{'s' * (len(generators) > 1)}, "
                                 f"and this one is {self.generator}: remove {field}")
        return self

    @property
    def is_images(self) -> bool:
        """Whether the generated features are images rather than a feature table."""
        return self.source == "generator" and self.generator == "random_images"

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one generated example (image_shape for images, else ``(features,)``)."""
        if self.is_images:
            return tuple(self.image_shape or DEFAULT_IMAGE_SHAPE)
        return (self.features,)

    def _check_generated_size(self) -> None:
        elements = self.rows * math.prod(self.feature_shape)
        if elements > MAX_ELEMENTS:
            raise ValueError(f"rows x features = {elements} values is more than the {MAX_ELEMENTS} a generator may create")


class PreprocessingConfig(_Section):
    """Standardisation, always fitted on the training split only."""

    standardize_inputs: bool = False
    standardize_targets: bool = False


# ------------------------------------------------------------------------------------- layers

KernelSize = PositiveInt | tuple[PositiveInt, PositiveInt]
Regularizer = str | dict[str, Any]


# What TensorFlow accepts in a name scope, which a layer's name becomes ("a/b" and "my layer:1"
# fail only when the model is built or first called).
_LAYER_NAME_RE = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.-]*")


class _LayerBase(_Section):
    name: Annotated[str, Field(max_length=200)] | None = None

    @field_validator("name")
    @classmethod
    def _scope_name(cls, value: str | None) -> str | None:
        if value is not None and not _LAYER_NAME_RE.fullmatch(value):
            raise ValueError(f"a layer name takes letters, digits and _ . - (not first: _ -), got {short(value)}")
        return value


class DenseLayer(_LayerBase):
    """``keras.layers.Dense``."""

    type: Literal["dense"]
    units: Annotated[int, Field(ge=1, le=1_000_000)]
    activation: str | None = None
    use_bias: bool = True
    kernel_initializer: NamedSpec = "glorot_uniform"
    bias_initializer: NamedSpec = "zeros"
    kernel_regularizer: Regularizer | None = None
    bias_regularizer: Regularizer | None = None


class DropoutLayer(_LayerBase):
    """``keras.layers.Dropout``."""

    type: Literal["dropout"]
    rate: Fraction


class Conv2DLayer(_LayerBase):
    """``keras.layers.Conv2D``."""

    type: Literal["conv2d"]
    filters: Annotated[int, Field(ge=1, le=100_000)]
    kernel_size: KernelSize
    strides: KernelSize = 1
    padding: Literal["valid", "same"] = "valid"
    activation: str | None = None
    use_bias: bool = True
    kernel_initializer: NamedSpec = "glorot_uniform"
    bias_initializer: NamedSpec = "zeros"
    kernel_regularizer: Regularizer | None = None
    bias_regularizer: Regularizer | None = None


class MaxPool2DLayer(_LayerBase):
    """``keras.layers.MaxPooling2D``."""

    type: Literal["maxpool2d"]
    pool_size: KernelSize = 2
    strides: KernelSize | None = None
    padding: Literal["valid", "same"] = "valid"


class FlattenLayer(_LayerBase):
    """``keras.layers.Flatten``."""

    type: Literal["flatten"]


class BatchNormLayer(_LayerBase):
    """``keras.layers.BatchNormalization``."""

    type: Literal["batchnorm"]
    momentum: Fraction = 0.99
    epsilon: Annotated[FiniteFloat, Field(gt=0.0)] = 1e-3


class ActivationLayer(_LayerBase):
    """``keras.layers.Activation``."""

    type: Literal["activation"]
    activation: str


LayerSpec = Annotated[
    DenseLayer | DropoutLayer | Conv2DLayer | MaxPool2DLayer | FlattenLayer | BatchNormLayer | ActivationLayer,
    Field(discriminator="type"),
]
#: Every layer ``type`` a recipe may use (``dense``, ``dropout``...), in the union's order.
LAYER_TYPES: tuple[str, ...] = tuple(tag for layer in flatten_types((LayerSpec,)) for tag in literal_values(layer.model_fields["type"]))

_BUILDER_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


class ModelSection(_Section):
    """Either a list of layers (a Sequential model) or a ``"package.module:function"`` builder."""

    layers: list[LayerSpec] | None = None
    builder: str | None = None
    builder_args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("builder")
    @classmethod
    def _builder_format(cls, value: str | None) -> str | None:
        if value is not None and not _BUILDER_RE.match(value):
            raise ValueError(f'builder must look like "package.module:function", got {short(value)}')
        return value

    @model_validator(mode="after")
    def _one_way(self) -> ModelSection:
        if (self.layers is None) == (self.builder is None):
            raise ValueError("give exactly one of 'layers' (a list of layer specs) and 'builder' ('package.module:function')")
        if self.layers is not None:
            if not self.layers:
                raise ValueError("'layers' is empty; list at least one layer")
            names = [layer.name for layer in self.layers if layer.name]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"layer names must be unique, {', '.join(duplicates)} is used more than once")
        if self.builder_args and self.builder is None:
            raise ValueError("'builder_args' only applies together with 'builder'")
        return self


# ----------------------------------------------------------------------------- training, logs


class EarlyStoppingConfig(_Section):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    monitor: str = "val_loss"
    patience: Annotated[int, Field(ge=0, le=MAX_EPOCHS)] = 10
    restore_best_weights: bool = True
    min_delta: Annotated[FiniteFloat, Field(ge=0.0)] = 0.0


class TrainingConfig(_Section):
    """Options of the training loop."""

    epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] = 10
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH)] = 32
    shuffle: bool = True
    seed: Seed = 0
    validation_split: Fraction = 0.2
    early_stopping: EarlyStoppingConfig | None = None
    # class id -> weight of its training rows (fit's class_weight); the class-imbalance check
    # suggests one
    class_weight: dict[Annotated[int, Field(ge=0)], Annotated[FiniteFloat, Field(ge=0.0)]] | None = None

    @field_validator("class_weight", mode="before")
    @classmethod
    def _no_boolean_classes(cls, value: Any) -> Any:
        # true/false would pass as class 1/0 or weight 1.0/0.0 (the Trainer refuses them too).
        if isinstance(value, Mapping) and any(isinstance(v, bool) for item in value.items() for v in item):
            raise ValueError(f"class_weight maps class ids to weights, both numbers; got {short(dict(value))}")
        return value
    steps_per_execution: Literal["auto"] | Annotated[int, Field(ge=1, le=MAX_BATCH)] = "auto"
    jit_compile: Literal["auto"] | bool = "auto"
    # epochs; 0 = never; auto = after an epoch once 30 s have passed since the last one
    checkpoint_every: Literal["auto"] | Annotated[int, Field(ge=0, le=MAX_EPOCHS)] = "auto"
    on_nan: Literal["stop", "warn"] = "stop"
    # as model.compile: a mixed_float16 model's optimizer is wrapped in a LossScaleOptimizer
    auto_scale_loss: bool = True
    report_last_batch_loss: bool = False
    # none: one device; mirrored: every local GPU (MirroredStrategy); multi_worker: the cluster in
    # TF_CONFIG (MultiWorkerMirroredStrategy). See trainkit.distribute.
    distribute: Literal["none", "mirrored", "multi_worker"] = "none"


class LoggingConfig(_Section):
    """What goes to TensorBoard, and how often."""

    logdir: str = "runs"
    scalars_every: Annotated[int, Field(ge=1, le=MAX_BATCH)] = 1
    histograms_every: Literal["epoch"] | Annotated[int, Field(ge=1, le=MAX_BATCH)] = "epoch"
    statistics: bool = True

    @field_validator("logdir")
    @classmethod
    def _home_expanded(cls, value: str) -> str:
        # No shell reads a recipe: `logdir: ~/runs` made a folder named "~" in the current
        # directory, while the summary's "run written to ~/runs/..." sent the user to their home.
        return os.path.expanduser(value)


# ------------------------------------------------------------------------------------- recipe


class Recipe(_Section):
    """A validated recipe. Build one with :func:`load_recipe` or :meth:`from_dict`."""

    name: str | None = None
    description: str = ""
    task: Task
    allow: list[str] = Field(default_factory=list)
    data: DataConfig = Field(default_factory=DataConfig)
    preprocessing: PreprocessingConfig = Field(default_factory=PreprocessingConfig)
    model: ModelSection
    loss: NamedSpec
    optimizer: NamedSpec = "adam"
    metrics: list[NamedSpec] = Field(default_factory=list)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    # Dotted path -> values; `trainkit compare` trains every combination (see trainkit.compare).
    sweep: dict[str, list[Any]] | None = None

    # The file the recipe came from; relative data paths resolve against its directory.
    _source_path: Path | None = PrivateAttr(default=None)
    _overrides: tuple[str, ...] = PrivateAttr(default=())  # the --set values it was loaded with

    @field_validator("name")
    @classmethod
    def _one_path_component(cls, value: str | None) -> str | None:
        # The name is a directory under the logdir: it must not climb out of it or nest.
        if value is not None and (not value.strip() or value in (".", "..") or any(c in value for c in "/\\\0")):
            raise ValueError(f"name becomes a directory under the logdir, so it must be one plain folder name (no '/', '\\' or '..'); got {value!r}")
        if value is not None and len(value.encode("utf-8")) > MAX_NAME_BYTES:
            # Training failed with an OSError traceback ("File name too long") creating its folder.
            raise ValueError(f"name becomes a directory under the logdir, and file systems take folder names of at most {MAX_NAME_BYTES} bytes; "
                             f"got {len(value.encode('utf-8'))}: {short(value)}")
        return value

    @field_validator("loss", "optimizer")
    @classmethod
    def _named(cls, value: NamedSpec, info: Any) -> NamedSpec:
        return _check_named(value, info.field_name)

    @field_validator("metrics")
    @classmethod
    def _named_metrics(cls, value: list[NamedSpec]) -> list[NamedSpec]:
        return [_check_named(v, "metrics") for v in value]

    @field_validator("sweep", mode="before")
    @classmethod
    def _flat_sweep(cls, value: Any) -> Any:
        # `--set sweep.optimizer.learning_rate=[...]` nests mappings; both spellings mean one path.
        return _flatten_sweep(value) if isinstance(value, Mapping) else value

    @model_validator(mode="after")
    def _sweep_paths(self) -> Recipe:
        if not self.sweep:
            return self
        variants = 1
        for path, values in self.sweep.items():
            if not values:
                raise ValueError(f"sweep.{path} lists no values; give the values to train, e.g. {path}: {_sweep_example(path)}")
            if path.split(".")[0] == "sweep":
                raise ValueError(f"sweep.{path}: a sweep cannot change the sweep itself")
            variants *= len(values)
            seen: list[str] = []
            for value in values:
                if repr(value) in seen:  # two runs of the same variant, under one name
                    raise ValueError(f"sweep.{path} lists {short(value)} twice; give each value once")
                seen.append(repr(value))
        if variants > MAX_VARIANTS:
            raise ValueError(f"the sweep has {variants} combinations; at most {MAX_VARIANTS} can be compared")
        # The same path walk as --set, on the resolved recipe, so a misspelt path is named with its
        # closest valid key before anything trains.
        resolved = self.model_dump(exclude={"sweep"})
        for path, values in self.sweep.items():
            try:
                recipe_overrides.set_at(resolved, path.split("."), values[0], f"sweep {path}", type(self))
            except RecipeError as err:
                reason = err.message.replace(f"Override {short(f'sweep {path}')}: ", "").rstrip(".")
                # The error line ends with its own period: keep the hint inside the sentence.
                reason = reason.replace(". Did you mean ", " (did you mean ").replace("?", ")") if ". Did you mean " in reason else reason
                raise ValueError(f"sweep.{path}: {reason}") from None
        return self

    @model_validator(mode="after")
    def _monitor_is_logged(self) -> Recipe:
        # Checked here, not after the first epoch: `trainkit check` and compare's validation of
        # every variant catch a misspelt monitor before anything trains.
        stopping = self.training.early_stopping
        if stopping is None:
            return self
        # Numbered as the trainer numbers a repeated name ([auc, {name: auc, curve: PR}] logs auc, auc_1).
        logged = ["loss", *numbered(_metric_log_name(m) for m in self.metrics)]
        validated = self.training.validation_split > 0
        logged += [f"val_{name}" for name in logged] if validated else []
        logged += ["last_batch_loss"] if self.training.report_last_batch_loss else []
        if stopping.monitor not in logged:
            why = " (val_* needs training.validation_split > 0)" if stopping.monitor.startswith("val_") and not validated else ""
            hint = f", did you mean {match[0]!r}" if (match := difflib.get_close_matches(stopping.monitor, logged, n=1)) else ""
            raise ValueError(f"training.early_stopping.monitor {stopping.monitor!r} is not logged{why}{hint}; the epoch logs are {', '.join(logged)}")
        return self

    @model_validator(mode="after")
    def _targets_continuous(self) -> Recipe:
        if self.preprocessing.standardize_targets and self.task != "regression":
            raise ValueError(f"standardize_targets would turn {self.task} class labels into fractions; it only applies to task: regression")
        if self.preprocessing.standardize_targets and self.loss_name in _UNCENTRED_LOSSES:
            # Standardised diabetes targets (-1.5..2.5) under msle or poisson were refused by the
            # data checks with "use loss='mse' for signed targets", the recipe's own key unnamed;
            # under mape (targets near 0, each error divided by |y|) they passed the checks.
            raise ValueError(f"standardize_targets centres the targets on 0, which loss {self.loss_name} cannot take "
                             f"({_UNCENTRED_LOSSES[self.loss_name]}): remove standardize_targets and scale the targets "
                             "with data.target_scale (one factor, no shift: 1 / their mean), or use loss: mse")
        return self

    @model_validator(mode="after")
    def _generator_fits_the_task(self) -> Recipe:
        data = self.data
        if self.task == "multilabel" and data.source == "generator" and data.generator not in ("random_labels", "random_images"):
            raise ValueError(f"{data.generator} makes one label a row; multi-hot labels (task: multilabel) come from random_labels or random_images")
        return self

    @model_validator(mode="after")
    def _target_keys_fit_the_task(self) -> Recipe:
        # Each was silently ignored where it does not apply: target_offset: -1 looked like the fix
        # of a file's 1-based class labels and changed nothing.
        data = self.data
        if self.task == "regression":
            if data.one_hot:
                raise ValueError("one_hot lays out class labels; a regression's targets are numbers to predict: remove it")
            if self.training.class_weight:
                # fit refuses it too, but only once the run directory exists: refused here, it leaves none.
                raise ValueError("training.class_weight weighs the classes of a classification task; a regression has none: remove it")
            return self
        if self.task == "multilabel" and data.one_hot:
            raise ValueError("one_hot lays out class ids as one-hot rows; multilabel labels are one 0/1 column a label already: remove it")
        if self.task == "multilabel" and self.training.class_weight:
            # fit refuses it too, but only once the run directory exists: refused here, it leaves none.
            raise ValueError("training.class_weight weighs each row by its one class; a multilabel row holds several labels (or none): "
                             "remove it (for rare labels, loss: {name: binary_focal_crossentropy, apply_class_balancing: true, alpha: 0.9}: "
                             "alpha weighs the 1s, and its default 0.25 weighs them down)")
        if data.target_scale != 1.0:
            raise ValueError(f"target_scale scales regression targets; {self.task} labels are class ids: remove it")
        if data.target_offset != 0.0:
            if self.task == "multilabel" or data.source == "generator":
                made = "0/1 per label" if self.task == "multilabel" else "the ids 0..K-1 already"
                raise ValueError(f"target_offset shifts class ids read from a file; these labels are {made}: remove it")
            if data.target_offset != int(data.target_offset):
                raise ValueError(f"target_offset shifts class ids, so it must be a whole number (-1 turns ids 1..K into 0..K-1); got {data.target_offset:g}")
        return self

    @property
    def overrides(self) -> tuple[str, ...]:
        """The ``key.path=value`` overrides the recipe was loaded with (``--set``)."""
        return self._overrides

    @property
    def source_path(self) -> Path | None:
        """The recipe file this recipe was loaded from, or ``None``."""
        return self._source_path

    @property
    def base_dir(self) -> Path:
        """Directory that relative data paths are resolved against (the recipe's, else the cwd)."""
        return self._source_path.parent if self._source_path else Path.cwd()

    @property
    def loss_name(self) -> str:
        """The loss name as written (``"binary_crossentropy"``)."""
        return _spec_name(self.loss)

    @property
    def optimizer_name(self) -> str:
        """The optimizer name as written (``"adam"``)."""
        return _spec_name(self.optimizer)

    @classmethod
    def from_dict(cls, raw: Any, source_path: str | Path | None = None) -> Recipe:
        """Validates a parsed recipe mapping.

        Args:
            raw: The mapping read from YAML (after overrides).
            source_path: The file it came from, if any; gives the default name and base directory.

        Raises:
            RecipeError: ``recipe-empty``, ``recipe-invalid-value`` or ``recipe-unknown-key``.
        """
        where = f"{source_path}: " if source_path else ""
        if raw is None or raw == {}:
            raise RecipeError("recipe-empty", f"{where}The recipe is empty. It needs at least 'task', 'model' and 'loss'.")
        if not isinstance(raw, Mapping):
            raise RecipeError("recipe-invalid-value", f"{where}A recipe must be a mapping of keys (task, data, model, loss, ...), got {describe(raw)}.")
        problem = too_big(raw)
        if problem:
            raise RecipeError("recipe-invalid-value", f"{where}The recipe {problem}.")
        data = dict(raw)
        if source_path is not None and data.get("name") is None:
            data["name"] = Path(source_path).stem
        try:
            recipe = cls.model_validate(data)
        except ValidationError as err:
            raise to_recipe_error(err, data, where, cls) from None
        except RecursionError:
            raise RecipeError("recipe-invalid-value", f"{where}The recipe is nested too deeply to validate.") from None
        if source_path is not None:
            recipe._source_path = Path(source_path).resolve()
        return recipe

    def to_yaml(self) -> str:
        """The fully resolved recipe (defaults included) as YAML text."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

    def hparams(self) -> dict[str, str | float | int | bool]:
        """A flat dict of the main hyperparameters, for TensorBoard HParams and run comparison.

        Every value is a str, float, int or bool (never None), and the keys do not depend on the
        recipe, so runs of different recipes can be compared column by column. Numbers that do not
        apply are 0 (``rows`` of a file source, which ``run.run_hparams`` fills in once loaded) or
        -1 (a learning rate that is a schedule or belongs to an optimizer name Keras does not
        know); an unset learning rate is Keras' default. ``learning_rate_schedule`` writes a
        schedule out (``""`` without one).
        """
        return {
            "task": self.task,
            "data": self.data.generator if self.data.source == "generator" else self.data.source,
            "rows": self.data.rows if self.data.source == "generator" else 0,
            "data_seed": self.data.seed,
            "feature_scale": self.data.feature_scale,
            "standardize_inputs": self.preprocessing.standardize_inputs,
            "standardize_targets": self.preprocessing.standardize_targets,
            **_layer_hparams(self.model),
            "loss": self.loss_name,
            "from_logits": bool(self.loss.get("from_logits", False)) if isinstance(self.loss, dict) else False,
            "optimizer": self.optimizer_name,
            "learning_rate": self._learning_rate(),
            "learning_rate_schedule": self._learning_rate_schedule(),
            "epochs": self.training.epochs,
            "batch_size": self.training.batch_size,
            "validation_split": self.training.validation_split,
            "early_stopping": _early_stopping_hparam(self.training.early_stopping),
            "seed": self.training.seed,
        }

    def _learning_rate(self) -> float:
        if isinstance(self.optimizer, dict) and "learning_rate" in self.optimizer:
            try:
                return float(self.optimizer["learning_rate"])
            except (TypeError, ValueError):  # a schedule mapping: no single number
                return -1.0
        return _default_learning_rate(self.optimizer_name)

    def _learning_rate_schedule(self) -> str:
        """A schedule's class and arguments (``CosineDecay(decay_steps=1000, initial_learning_rate=0.1)``),
        ``""`` for a number: ``learning_rate`` is -1 for every schedule, so two recipes that differed
        in their schedules alone showed no column telling them apart, and a run whose recipe.yaml
        was gone resumed with another schedule unrefused."""
        rate = self.optimizer.get("learning_rate") if isinstance(self.optimizer, dict) else None
        if not isinstance(rate, Mapping):
            return ""
        config = rate.get("config")
        arguments = ", ".join(f"{key}={value}" for key, value in sorted(config.items())) if isinstance(config, Mapping) else ""
        return f"{rate.get('class_name')}({arguments})"


def _flatten_sweep(node: Mapping[Any, Any], prefix: str = "") -> dict[str, Any]:
    """``{optimizer: {learning_rate: [..]}}`` and ``{optimizer.learning_rate: [..]}`` -> dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten_sweep(value, f"{path}."))
        else:
            flat[path] = value
    return flat


_NAMED_EXAMPLES = {
    "loss": "{name: binary_crossentropy, from_logits: true}",
    "optimizer": "{name: adam, learning_rate: 0.001}",
    "metrics": "{name: auc, curve: PR}",
}


def _check_named(value: NamedSpec, field: str) -> NamedSpec:
    if isinstance(value, dict) and not isinstance(value.get("name"), str):
        raise ValueError(f"a mapping here needs a 'name' key with a string, such as {_NAMED_EXAMPLES[field]}; got {short(value)}")
    return value


def _metric_log_name(spec: NamedSpec) -> str:
    """The key a metric has in the epoch logs: its name as written, ``accuracy`` for ``acc``."""
    name = str(spec["name"] if isinstance(spec, dict) else spec)
    return "accuracy" if name.lower() in ("accuracy", "acc") else name


#: Losses (by the names a recipe may give them) that read targets centred on 0 wrongly, and why.
_UNCENTRED_LOSSES = {
    **dict.fromkeys(("msle", "mean_squared_logarithmic_error", "meansquaredlogarithmicerror"),
                    "it compares log(1 + y) and reads every target below 0 as 0"),
    **dict.fromkeys(("mape", "mean_absolute_percentage_error", "meanabsolutepercentageerror"),
                    "it divides each error by |y|, huge for the targets near 0"),
    "poisson": "its rates are >= 0",
}


def _spec_name(spec: NamedSpec) -> str:
    return str(spec["name"] if isinstance(spec, dict) else spec).lower()


_SWEEP_EXAMPLES = {"epochs": "[10, 20]", "batch_size": "[16, 32]", "units": "[16, 32]", "filters": "[16, 32]", "patience": "[5, 10]",
                   "seed": "[0, 1, 2]", "activation": "[relu, tanh]", "kernel_initializer": "[glorot_uniform, he_normal]"}


def _sweep_example(path: str) -> str:
    """A plausible list of values for a sweep of ``path``, for an error message (a learning
    rate's, ``[0.1, 0.01]``, for ``training.epochs`` gave epochs no recipe accepts)."""
    return _SWEEP_EXAMPLES.get(path.rsplit(".", 1)[-1], "[0.1, 0.01]")


def _default_learning_rate(optimizer: str) -> float:
    """Keras' default learning rate for an optimizer name, read from its signature (-1 if unknown)."""
    import inspect

    from trainkit import resolve  # imports Keras: deferred so that loading recipes stays fast

    cls = resolve.OPTIMIZER_CLASSES.get(optimizer)
    if cls is None:
        return -1.0
    default = inspect.signature(cls).parameters.get("learning_rate")
    return float(default.default) if default is not None and isinstance(default.default, int | float) else -1.0


def _layer_hparams(model: ModelSection) -> dict[str, str | float | int | bool]:
    """Widths as "64-32-1", activations as "relu-relu-sigmoid", and the regularisation in use."""
    if model.layers is None:
        return {"layers": f"builder:{model.builder}", "activations": "", "kernel_initializer": "", "dropout": 0.0, "l2": 0.0, "batchnorm": False}
    widths, activations, initializers, l2 = [], [], [], 0.0
    for layer in model.layers:
        if isinstance(layer, DenseLayer | Conv2DLayer):
            widths.append(str(layer.units) if isinstance(layer, DenseLayer) else f"conv{layer.filters}")
            activations.append(layer.activation or "linear")
            initializers.append(_spec_name(layer.kernel_initializer))
            if isinstance(layer.kernel_regularizer, dict):
                l2 = max(l2, _as_float(layer.kernel_regularizer.get("l2", 0.0)))
        elif isinstance(layer, ActivationLayer):
            activations.append(layer.activation)
    rates = [layer.rate for layer in model.layers if isinstance(layer, DropoutLayer)]
    return {
        "layers": "-".join(widths),
        "activations": "-".join(activations),
        "kernel_initializer": "-".join(dict.fromkeys(initializers)),
        "dropout": max(rates, default=0.0),
        "l2": l2,
        "batchnorm": any(isinstance(layer, BatchNormLayer) for layer in model.layers),
    }


def _early_stopping_hparam(stopping: EarlyStoppingConfig | None) -> str:
    """Early stopping as one table cell: ``"none"`` or ``"val_loss, patience 10, best restored"``.

    A recipe and its early-stopping fix (high_early_stop_broken/_fixed) differ only here, and
    without it ``trainkit compare`` and the HParams dashboard showed no difference between them.
    """
    if stopping is None:
        return "none"
    parts = [stopping.monitor, f"patience {stopping.patience}"]
    if stopping.min_delta:
        parts.append(f"min_delta {stopping.min_delta:g}")
    if stopping.restore_best_weights:
        parts.append("best restored")
    return ", ".join(parts)


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


# --------------------------------------------------------------------------------- loading API


def _recipe_nearby(path: Path) -> str:
    """``' Did you mean X?'`` for the recipe file a missing ``path`` likely meant, or ``''``.

    ``trainkit recipes`` lists recipes by name, and ``trainkit train mlp_binary`` only said the file
    did not exist: the name is looked up with ``.yaml`` (``.yml``), in ``recipes/`` when it names
    no folder, and else the closest file name of its folder is offered. A ``recipes/...`` path
    where no ``recipes/`` folder exists (the README's commands run outside the repository) is told
    that the scenario recipes are the repository's files, which pip does not install.
    """
    if path.parts[:1] == ("recipes",) and not Path("recipes").exists():
        return (" The scenario recipes are the trainkit repository's recipes/ folder, which pip does not install: "
                f"give their path in a clone of the repository (~/trainkit/{path.as_posix()}).")
    names = [path.name] if path.suffix.lower() in (".yaml", ".yml") else [f"{path.name}.yaml", f"{path.name}.yml"]
    folders = [path.parent, Path("recipes")] if len(path.parts) == 1 else [path.parent]
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return f" Did you mean {folder / name}?"
    try:
        files = {p.stem: p.name for p in path.parent.iterdir() if p.suffix.lower() in (".yaml", ".yml") and p.is_file()}
    except OSError:
        return ""
    match = closest_match(path.stem, sorted(files))  # the stems: every name shares ".yaml"
    return f" Did you mean {path.parent / files[match]}?" if match is not None else ""


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Reads, overrides and validates a recipe file.

    Args:
        path: The YAML file.
        overrides: ``"a.b.c=value"`` strings applied in order before validation.

    Returns:
        The validated :class:`Recipe`; its ``name`` defaults to the file stem.

    Raises:
        RecipeError: any of the codes listed in this module's docstring.
    """
    path = Path(path)
    where = f"{path}: "
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_RECIPE_BYTES + 1)
        text = data.decode("utf-8") if len(data) <= MAX_RECIPE_BYTES else ""  # too large: refused below
    except FileNotFoundError:
        raise RecipeError("recipe-not-found", f"Recipe file {path} does not exist.{_recipe_nearby(path)}") from None
    except IsADirectoryError:
        raise RecipeError("recipe-not-found", f"Recipe path {path} is a directory, not a YAML file.") from None
    except UnicodeDecodeError as err:  # a ValueError too: caught first
        raise RecipeError("recipe-yaml", f"Recipe file {path} is not UTF-8 text (byte {err.start}).") from None
    except ValueError as err:  # e.g. a NUL character in the path
        raise RecipeError("recipe-not-found", one_line(f"Recipe path {short(str(path))} is not a valid path: {err}")) from None
    except OSError as err:
        raise RecipeError("recipe-not-found", one_line(f"Recipe file {path} cannot be read: {err}")) from None
    if len(data) > MAX_RECIPE_BYTES:
        raise RecipeError("recipe-yaml", f"Recipe file {path} is larger than {MAX_RECIPE_BYTES >> 20} MiB, too large for a recipe: "
                                         "is it the recipe (a YAML mapping with task, model and loss)?")
    from_file = parse_yaml(text, where)
    raw = from_file
    if overrides:
        if raw is not None and not isinstance(raw, Mapping):
            raise RecipeError("recipe-invalid-value", f"{where}A recipe must be a mapping of keys (task, data, model, loss, ...), got {describe(raw)}.")
        raw = apply_overrides(raw, overrides)
    try:
        recipe = Recipe.from_dict(raw, source_path=path)
    except RecipeError as err:
        culprit = _override_at_fault(err.message, overrides or ()) or _first_failing_override(from_file, overrides or (), path)
        if culprit is None:
            raise
        # The value came from the command line: blame the --set, not the file.
        raise RecipeError(err.code, f"--set {culprit}: " + err.message.removeprefix(where)) from None
    recipe._overrides = tuple(overrides or ())
    return recipe


def _override_at_fault(message: str, overrides: Sequence[str]) -> str | None:
    """The override whose path a validation message names (``training.epochs``), if any.

    Messages name full dotted paths (``training.early_stopping.monitor``, ``sweep.x.y``), so the
    path of an override, or of a mapping it set, is found as it was written.
    """
    for override in reversed(overrides):  # the last one set wins
        key = override.partition("=")[0].strip()
        section, _, field = key.rpartition(".")
        if (any(f" {key}{end}" in message for end in (":", " ", "."))  # training.class_weight.0
                or (section and f"Invalid {section}: {field} " in message)):
            return override
    return None


def _first_failing_override(from_file: Any, overrides: Sequence[str], path: Path) -> str | None:
    """The override after which the recipe stops validating; None when the file alone fails.

    For the errors whose message names no override's path: ``--set training.validation_split=0``
    that leaves the file's early-stopping monitor without its val_ value, say.
    """
    for count in range(len(overrides)):
        try:
            Recipe.from_dict(apply_overrides(from_file, overrides[:count]), source_path=path)
        except RecipeError:
            return overrides[count - 1] if count else None
    return overrides[-1] if overrides else None


def list_recipes(directory: str | Path) -> list[tuple[str, str]]:
    """Names and descriptions of the recipes (``*.yaml``, ``*.yml``) in a directory, sorted by file.

    Each is named by its file stem, with its ``name:`` beside it where that differs (files that
    share a name stay apart).

    A file that fails to load is listed under its file stem with its error as the description, so
    one broken recipe never hides the others.
    """
    directory = Path(directory)
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    listing = []
    for file in files:
        try:
            recipe = load_recipe(file)
            # Named by its file (what train takes); a name: of its own is shown beside it.
            shown = file.stem if recipe.name in (None, file.stem) else f"{file.stem} (name: {recipe.name})"
            listing.append((shown, recipe.description))
        except RecipeError as err:
            listing.append((file.stem, f"error: [{err.code}] {err.message}"))
        except Exception as err:  # a listing must not crash on one odd file
            listing.append((file.stem, one_line(f"error: {type(err).__name__}: {err}")))
    return listing


def apply_overrides(raw: Mapping[str, Any] | None, overrides: Sequence[str]) -> dict[str, Any]:
    """Applies ``--set`` overrides to a parsed recipe mapping, returning a new mapping.

    See :func:`trainkit.recipe_overrides.apply_overrides` (the paths are checked against
    :class:`Recipe`).

    Raises:
        RecipeError: ``bad-override`` for a string or a path the recipe cannot take.
    """
    return recipe_overrides.apply_overrides(raw, overrides, Recipe)


def apply_values(raw: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Sets already-parsed values at dotted paths of a recipe mapping (a sweep variant).

    Raises:
        RecipeError: ``bad-override`` for a path the recipe cannot hold.
    """
    return recipe_overrides.apply_values(raw, values, Recipe)

"""The YAML recipe: a pydantic schema, ``--set a.b=c`` overrides, and a loader with one-line errors.

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

import copy
import difflib
import math
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

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

from trainkit.errors import RecipeError, closest_match
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
# Free-form mappings (builder_args, optimizer kwargs) could nest without end; pydantic's serializer
# and Python's recursion limit give up at a few hundred levels, with exceptions of their own.
MAX_DEPTH = 32
MAX_NODES = 100_000
# A sweep trains every combination of its values: more than this is a typo or a job for a real
# hyperparameter search, not a side-by-side table.
MAX_VARIANTS = 256

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
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _takes_booleans(typing.get_args(annotation)[0])
    if origin is Union or isinstance(annotation, types.UnionType):
        return any(_takes_booleans(arg) for arg in typing.get_args(annotation))
    if origin is Literal:
        return any(isinstance(arg, bool) for arg in typing.get_args(annotation))
    return annotation not in (int, float, type(None))


# --------------------------------------------------------------------------------------- data


#: The data keys only some sources read (the others, scales and offsets, apply to every source).
_SOURCE_FIELDS: dict[str, frozenset[str]] = {
    "generator": frozenset({"generator", "rows", "features", "image_shape", "classes", "seed", "feature_distribution", "noise"}),
    "csv": frozenset({"path", "target", "drop"}),
    "npz": frozenset({"path", "x_key", "y_key"}),
    "sklearn": frozenset({"name"}),
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
            raise ValueError(f"a layer name takes letters, digits and _ . - (not first: _ -), got {_short(value)}")
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
LAYER_TYPES: tuple[str, ...] = ("dense", "dropout", "conv2d", "maxpool2d", "flatten", "batchnorm", "activation")

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
            raise ValueError(f'builder must look like "package.module:function", got {_short(value)}')
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
            raise ValueError(f"class_weight maps class ids to weights, both numbers; got {_short(dict(value))}")
        return value
    steps_per_execution: Literal["auto"] | Annotated[int, Field(ge=1, le=MAX_BATCH)] = "auto"
    jit_compile: Literal["auto"] | bool = "auto"
    # epochs; 0 = never; auto = after an epoch once 30 s have passed since the last one
    checkpoint_every: Literal["auto"] | Annotated[int, Field(ge=0, le=MAX_EPOCHS)] = "auto"
    on_nan: Literal["stop", "warn"] = "stop"
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
                raise ValueError(f"sweep.{path} lists no values; give at least one, e.g. {path}: [0.1, 0.01]")
            if path.split(".")[0] == "sweep":
                raise ValueError(f"sweep.{path}: a sweep cannot change the sweep itself")
            variants *= len(values)
            seen: list[str] = []
            for value in values:
                if repr(value) in seen:  # two runs of the same variant, under one name
                    raise ValueError(f"sweep.{path} lists {_short(value)} twice; give each value once")
                seen.append(repr(value))
        if variants > MAX_VARIANTS:
            raise ValueError(f"the sweep has {variants} combinations; at most {MAX_VARIANTS} can be compared")
        # The same path walk as --set, on the resolved recipe, so a misspelt path is named with its
        # closest valid key before anything trains.
        resolved = self.model_dump(exclude={"sweep"})
        for path, values in self.sweep.items():
            try:
                _named_as_mapping(resolved, path.split("."))
                _set_path(resolved, path.split("."), values[0], f"sweep {path}")
            except RecipeError as err:
                reason = err.message.replace(f"Override {_short(f'sweep {path}')}: ", "").rstrip(".")
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
        logged = ["loss", *(_metric_log_name(m) for m in self.metrics)]
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
            return self
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
            raise RecipeError("recipe-invalid-value", f"{where}A recipe must be a mapping of keys (task, data, model, loss, ...), got {_describe(raw)}.")
        problem = _too_big(raw)
        if problem:
            raise RecipeError("recipe-invalid-value", f"{where}The recipe {problem}.")
        data = dict(raw)
        if source_path is not None and data.get("name") is None:
            data["name"] = Path(source_path).stem
        try:
            recipe = cls.model_validate(data)
        except ValidationError as err:
            raise _to_recipe_error(err, data, where) from None
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
        know); an unset learning rate is Keras' default.
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
            "epochs": self.training.epochs,
            "batch_size": self.training.batch_size,
            "validation_split": self.training.validation_split,
            "seed": self.training.seed,
        }

    def _learning_rate(self) -> float:
        if isinstance(self.optimizer, dict) and "learning_rate" in self.optimizer:
            try:
                return float(self.optimizer["learning_rate"])
            except (TypeError, ValueError):  # a schedule mapping: no single number
                return -1.0
        return _default_learning_rate(self.optimizer_name)


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
        raise ValueError(f"a mapping here needs a 'name' key with a string, such as {_NAMED_EXAMPLES[field]}; got {_short(value)}")
    return value


def _metric_log_name(spec: NamedSpec) -> str:
    """The key a metric has in the epoch logs: its name as written, ``accuracy`` for ``acc``."""
    name = str(spec["name"] if isinstance(spec, dict) else spec)
    return "accuracy" if name.lower() in ("accuracy", "acc") else name


def _spec_name(spec: NamedSpec) -> str:
    return str(spec["name"] if isinstance(spec, dict) else spec).lower()


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


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


# -------------------------------------------------------------------------------- YAML parsing


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float.

    YAML 1.1 (PyYAML) only accepts floats with a dot (``1.0e-3``), so a learning rate written
    ``1e-3`` would arrive as the string "1e-3". This adds the YAML 1.2 spelling on a subclass, so
    the global SafeLoader is left untouched. A key repeated in one mapping is an error (PyYAML
    keeps the last one silently, so ``optimizer: adam`` ... ``optimizer: sgd`` trained with SGD).
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], yaml.Node] = {}
            for key_node, _ in node.value:
                # Merged keys (<<) may be overridden by design; only keys written here count.
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = (key_node.tag, key_node.value)
                if key in first:
                    line = first[key].start_mark.line + 1
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key_node.value!r} (first at line {line}); keep one", key_node.start_mark)
                first[key] = key_node
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, where: str = "") -> Any:
    """Parses YAML text with trainkit's loader.

    Args:
        text: YAML source.
        where: Prefix for error messages (usually ``"path: "``).

    Raises:
        RecipeError: ``recipe-yaml`` with the line and column of the problem.
    """
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = err.problem or err.context or "invalid YAML"
        raise RecipeError("recipe-yaml", _one_line(f"{where}YAML syntax error{at}: {problem}.")) from None
    except yaml.YAMLError as err:  # e.g. ReaderError for control characters
        raise RecipeError("recipe-yaml", _one_line(f"{where}YAML error: {err}")) from None
    except (ValueError, OverflowError, RecursionError, TypeError) as err:
        # The safe constructors can still fail on values: an impossible date ("2024-13-45"), an
        # integer longer than Python converts from text, nesting deeper than the recursion limit.
        raise RecipeError("recipe-yaml", _one_line(f"{where}YAML value cannot be read: {type(err).__name__}: {err}")) from None


# --------------------------------------------------------------------------------- loading API


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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError("recipe-not-found", f"Recipe file {path} does not exist.") from None
    except IsADirectoryError:
        raise RecipeError("recipe-not-found", f"Recipe path {path} is a directory, not a YAML file.") from None
    except UnicodeDecodeError as err:  # a ValueError too: caught first
        raise RecipeError("recipe-yaml", f"Recipe file {path} is not UTF-8 text (byte {err.start}).") from None
    except ValueError as err:  # e.g. a NUL character in the path
        raise RecipeError("recipe-not-found", _one_line(f"Recipe path {_short(str(path))} is not a valid path: {err}")) from None
    except OSError as err:
        raise RecipeError("recipe-not-found", _one_line(f"Recipe file {path} cannot be read: {err}")) from None
    from_file = parse_yaml(text, where)
    raw = from_file
    if overrides:
        if raw is not None and not isinstance(raw, Mapping):
            raise RecipeError("recipe-invalid-value", f"{where}A recipe must be a mapping of keys (task, data, model, loss, ...), got {_describe(raw)}.")
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
            listing.append((file.stem, _one_line(f"error: {type(err).__name__}: {err}")))
    return listing


# ----------------------------------------------------------------------------------- overrides


def apply_overrides(raw: Mapping[str, Any] | None, overrides: Sequence[str]) -> dict[str, Any]:
    """Applies ``--set`` overrides to a parsed recipe mapping, returning a new mapping.

    Each override is ``dotted.path=value``; the value is read as YAML (``1e-3`` included, as a
    float), list items are addressed by index (``model.layers.0.units=64``), missing or null
    sections are created (``training.early_stopping.patience=3``), and an optimizer or loss given
    by name takes keyword paths (``optimizer.learning_rate=0.01`` on ``optimizer: adam``).

    Args:
        raw: The recipe mapping (not modified).
        overrides: The override strings, applied in order.

    Raises:
        RecipeError: ``bad-override`` when a string has no ``=``, an empty key, a path into a
            scalar, a list index out of range, an unknown key or an unreadable value.
    """
    if isinstance(overrides, str):  # a single override rather than a list of them
        overrides = [overrides]
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise RecipeError("recipe-invalid-value", f"A recipe must be a mapping of keys (task, data, model, loss, ...), got {_describe(raw)}.")
    try:
        result = copy.deepcopy(dict(raw))
    except RecursionError:
        raise RecipeError("recipe-invalid-value", "The recipe is nested too deeply to override.") from None
    for override in overrides:
        keys, value = _parse_override(override)
        _named_as_mapping(result, keys)
        _set_path(result, keys, value, override)
    return result


def apply_values(raw: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Sets already-parsed values at dotted paths (a sweep variant), returning a new mapping.

    The same path rules as :func:`apply_overrides`, without reading the values as YAML text.

    Raises:
        RecipeError: ``bad-override`` for a path the recipe cannot hold.
    """
    result = copy.deepcopy(dict(raw))
    for path, value in values.items():
        _named_as_mapping(result, path.split("."))
        _set_path(result, path.split("."), value, f"{path}={_short(value)}")
    return result


def _named_as_mapping(raw: dict[str, Any], keys: list[str]) -> None:
    """``optimizer: adam`` set or swept at ``optimizer.learning_rate`` becomes ``{name: adam}`` first.

    Changing the learning rate of a recipe that names its optimizer by a bare string is the most
    common override there is; the spelling of the optimizer should not stand in its way.
    """
    if len(keys) > 1 and keys[0] == "optimizer" and keys[0] not in raw:  # the default optimizer
        raw["optimizer"] = {"name": Recipe.model_fields["optimizer"].default}
    if len(keys) > 1 and keys[0] in ("optimizer", "loss") and isinstance(raw.get(keys[0]), str):
        raw[keys[0]] = {"name": raw[keys[0]]}


def _parse_override(override: Any) -> tuple[list[str], Any]:
    if not isinstance(override, str) or "=" not in override:
        raise RecipeError("bad-override", f"Override {_short(override)} needs the form key.path=value, e.g. training.epochs=5.")
    key, _, text = override.partition("=")
    keys = key.strip().split(".")
    if any(not k.strip() for k in keys):
        raise RecipeError("bad-override", f"Override {_short(override)} has an empty key; write e.g. optimizer.learning_rate=0.01.")
    try:
        value = parse_yaml(text)
    except RecipeError as err:
        raise RecipeError("bad-override", f"Override {_short(override)}: the value is not valid YAML ({err.message})") from None
    return [k.strip() for k in keys], value


def _set_path(root: dict[str, Any], keys: list[str], value: Any, override: str) -> None:
    node: Any = root
    schema: _Schema = _Schema((Recipe,))
    for depth, key in enumerate(keys):
        dotted = ".".join(keys[: depth + 1])
        last = depth == len(keys) - 1
        if isinstance(node, list):
            index = _list_index(key, node, dotted, override)
            schema = schema.item()
            if last:
                node[index] = value
            else:
                node[index] = _child_container(node[index], schema, dotted, override)
                node = node[index]
            continue
        schema = schema.narrow(node).field(key, dotted, override)
        if last:
            node[key] = value
        else:
            node[key] = _child_container(node.get(key), schema, dotted, override)
            node = node[key]


def _list_index(key: str, node: list[Any], dotted: str, override: str) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise RecipeError("bad-override", f"Override {_short(override)}: {dotted} is not an item of a list of {len(node)}; use an index from 0 to {len(node) - 1}.")
    return int(key)


def _child_container(current: Any, schema: _Schema, dotted: str, override: str) -> Any:
    """The dict or list to descend into, creating a mapping where the recipe has none (or null)."""
    if isinstance(current, dict | list):
        return current
    if current is None and schema.is_mapping():
        return {}
    if current is None:  # a list the recipe does not set: its items cannot be set one by one
        raise RecipeError("bad-override", f"Override {_short(override)}: the recipe sets no {dotted}, so it has no items to change; set the whole list: --set '{dotted}=[...]'.")
    raise RecipeError("bad-override", f"Override {_short(override)}: {dotted} holds {_describe(current)}, which has no keys to set.")


class _Schema:
    """The set of types a position in a recipe may hold, for checking override paths."""

    def __init__(self, types_: tuple[Any, ...]) -> None:
        self.types = tuple(t for t in _flatten_types(types_) if t is not type(None))

    def models(self) -> list[type[BaseModel]]:
        return [t for t in self.types if isinstance(t, type) and issubclass(t, BaseModel)]

    def is_mapping(self) -> bool:
        return bool(self.models()) or self.is_free_mapping()

    def is_free_mapping(self) -> bool:
        """A ``dict[str, Any]`` position (builder_args, {name: adam, ...}) accepts any key."""
        return any(t is Any or typing.get_origin(t) is dict or t is dict for t in self.types)

    def narrow(self, node: Any) -> _Schema:
        """Keeps the layer model whose ``type`` matches the mapping being edited."""
        models = self.models()
        if len(models) > 1 and isinstance(node, dict) and "type" in node:
            chosen = [m for m in models if node["type"] in _literal_values(m.model_fields.get("type"))]
            if chosen:
                return _Schema(tuple(chosen))
        return self

    def field(self, key: str, dotted: str, override: str) -> _Schema:
        """The schema of ``key`` below this position, or ``bad-override`` if no model has it."""
        if self.is_free_mapping():
            return _Schema((Any,))
        known: dict[str, Any] = {}
        for model in self.models():
            known.update({name: f.annotation for name, f in model.model_fields.items()})
        if key in known:
            return _Schema((known[key],))
        if known:
            parent = dotted.rpartition(".")[0]
            hint = _did_you_mean(key, known, parent)
            raise RecipeError("bad-override", f"Override {_short(override)}: unknown key {dotted}.{hint}")
        raise RecipeError("bad-override", f"Override {_short(override)}: {dotted} is inside a value that has no keys.")

    def item(self) -> _Schema:
        """The schema of the items of a list position."""
        items = [typing.get_args(t)[0] for t in self.types if typing.get_origin(t) is list and typing.get_args(t)]
        return _Schema(tuple(items) or (Any,))


def _flatten_types(types_: tuple[Any, ...]) -> Iterator[Any]:
    for t in types_:
        origin = typing.get_origin(t)
        if origin is Annotated:
            yield from _flatten_types((typing.get_args(t)[0],))
        elif origin is Union or origin is types.UnionType:
            yield from _flatten_types(typing.get_args(t))
        else:
            yield t


def _literal_values(field: Any) -> tuple[Any, ...]:
    if field is None:
        return ()
    return tuple(v for t in _flatten_types((field.annotation,)) if typing.get_origin(t) is Literal for v in typing.get_args(t))


# ------------------------------------------------------------------- pydantic errors -> one line

_MAX_REPORTED = 3


def _to_recipe_error(err: ValidationError, raw: Mapping[str, Any], where: str) -> RecipeError:
    """Turns a pydantic ValidationError into one RecipeError line (up to three problems)."""
    problems: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for error in err.errors():
        path = _dotted(error["loc"], raw, include_last=error["type"] in ("missing", "extra_forbidden"))
        kind = "unknown" if error["type"] == "extra_forbidden" else "invalid"
        problems.setdefault(path, (kind, []))[1].append(error)
    # Unknown keys first: they usually explain the other errors (a misspelt key looks missing).
    ordered = sorted(problems.items(), key=lambda item: item[1][0] != "unknown")
    code = "recipe-unknown-key" if ordered[0][1][0] == "unknown" else "recipe-invalid-value"
    parts = [_describe_problem(path, kind, errors, raw) for path, (kind, errors) in ordered[:_MAX_REPORTED]]
    more = len(ordered) - _MAX_REPORTED
    tail = f" (and {more} more problem{'s' * (more > 1)})" if more > 0 else ""
    return RecipeError(code, _one_line(where + " ".join(parts) + tail))


def _dotted(loc: tuple[Any, ...], raw: Any, include_last: bool) -> str:
    """The user's dotted path for a pydantic location, dropping pydantic's union-member labels.

    Pydantic inserts the name of the union member tried ("dense", "str", "dict[str,any]") into the
    location; only the steps that exist in the user's data are kept (plus a missing/unknown key).
    """
    parts: list[str] = []
    node = raw
    for i, step in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, Mapping) and not last and step == node.get("type"):
            continue  # the discriminator label pydantic adds for the layer union
        in_mapping = isinstance(node, Mapping) and step in node
        in_list = isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)
        if in_mapping or in_list:
            parts.append(str(step))
            node = node[step]
        elif isinstance(step, str) and (nested := _nested_value(node, step)) is not None:
            parts.append(step)  # a sweep path flattened from nested mappings (_flatten_sweep)
            node = nested
        elif include_last and last:
            parts.append(str(step))
    return ".".join(parts)


def _nested_value(node: Any, dotted: str) -> Any:
    """The value at ``dotted`` through nested mappings (``{a: {b: 1}}`` at ``a.b``), else None."""
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _describe_problem(path: str, kind: str, errors: list[dict[str, Any]], raw: Mapping[str, Any]) -> str:
    first = errors[0]
    if kind == "unknown":
        parent, _, key = path.rpartition(".")
        known = _fields_at(parent, raw)
        return f"Unknown key {path}.{_did_you_mean(key, known, parent)}"
    if first["type"] == "missing":
        return f"Missing required key {path}."
    if first["type"] == "union_tag_invalid":
        tag = first.get("ctx", {}).get("tag", "")
        return f"Invalid value at {path}.type: received {_short(tag)}; expected one of {', '.join(LAYER_TYPES)}.{_closest_quoted(str(tag), LAYER_TYPES)}"
    if first["type"] == "union_tag_not_found":
        return f"Invalid value at {path}: a layer needs a 'type', one of {', '.join(LAYER_TYPES)}."
    if first["type"] == "value_error":
        message = str(first["msg"]).removeprefix("Value error, ")
        return f"Invalid {path or 'recipe'}: {message}." if path else f"Invalid recipe: {message}."
    expected = " or ".join(dict.fromkeys(_expectation(e) for e in errors))
    if path.startswith("sweep.") and first["type"] == "list_type":
        expected += f" of the values to try, such as [{_short(first.get('input'))}]"
    hint = _closest_choice(path, errors, raw)
    return f"Invalid value at {path or 'recipe'}: received {_short(first.get('input'))}; expected {expected}.{hint}"


def _closest_choice(path: str, errors: list[dict[str, Any]], raw: Mapping[str, Any]) -> str:
    """' Did you mean binary?' for a misspelt value of a field with fixed choices (a Literal).

    The choices come from the schema at ``path``, so every such field (task, data.source,
    training.on_nan, a layer's padding, ...) gets the hint without a rule of its own.
    """
    value = errors[0].get("input")
    if not isinstance(value, str) or not any(e["type"] == "literal_error" for e in errors):
        return ""
    schema = _schema_at(path, raw)
    choices = [v for t in schema.types if typing.get_origin(t) is Literal for v in typing.get_args(t) if isinstance(v, str)] if schema else []
    return _closest_quoted(value, choices)


def _expectation(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "a valid value"))
    for prefix in ("Input should be ", "Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if message.startswith(("greater", "less", "at least", "at most")):
        message = f"a value {message}"  # "greater than 0" reads as a fragment on its own
    # "a valid dictionary or instance of TrainingConfig": the class is ours, the user wrote a mapping.
    message = re.sub(r"a valid dictionary or (instance of \w+|object to extract fields from)", "a mapping of keys (key: value, ...)", message)
    return message.rstrip(".")


def _fields_at(dotted: str, raw: Mapping[str, Any]) -> list[str]:
    """The valid keys of the schema model at a dotted path of ``raw`` (for "did you mean")."""
    schema = _schema_at(dotted, raw)
    return [name for m in schema.models() for name in m.model_fields] if schema else []


def _schema_at(dotted: str, raw: Mapping[str, Any]) -> _Schema | None:
    """The schema of the position a dotted path of ``raw`` names, or None if it has none.

    Walks ``raw`` along with the schema so that a layer is read as the model of its ``type``.
    """
    schema = _Schema((Recipe,))
    node: Any = raw
    for key in [k for k in dotted.split(".") if k]:
        if isinstance(node, list):
            schema = schema.item()
            node = node[int(key)] if key.isdigit() and int(key) < len(node) else None
            continue
        fields = {name: f.annotation for m in schema.narrow(node).models() for name, f in m.model_fields.items()}
        if key not in fields:
            return None
        schema = _Schema((fields[key],))
        node = node.get(key) if isinstance(node, Mapping) else None
    return schema.narrow(node)


def _did_you_mean(key: str, known: Sequence[str] | Mapping[str, Any], parent: str) -> str:
    names = list(known)
    match = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
    prefix = f"{parent}." if parent else ""
    if match:
        return f" Did you mean {prefix}{match[0]}?"
    if names:
        return f" Valid keys{' of ' + parent if parent else ''}: {', '.join(names)}."
    return ""


def _closest_quoted(name: str, choices: Sequence[str]) -> str:
    match = closest_match(name, choices)
    return f" Did you mean {match}?" if match is not None else ""


# ------------------------------------------------------------------------------------ helpers


def _too_big(value: Any) -> str | None:
    """Why a parsed recipe is too deep, too large or cyclic to handle, or None when it is fine.

    YAML anchors let a short file describe a cyclic value (``&a [*a]``) or an exponentially large
    one ("billion laughs"); both would hang or overflow the recursion limit later. Heights and
    expanded sizes are computed once per container (memoised by id), without recursion.
    """
    height: dict[int, int] = {}
    size: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(value, False)]
    open_ids: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        if not isinstance(node, Mapping | list | tuple) or (id(node) in height and not children_done):
            continue
        children = list(node.values()) if isinstance(node, Mapping) else list(node)
        if not children_done:
            if id(node) in open_ids:
                return "refers to itself through a YAML anchor"
            open_ids.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children)
            continue
        open_ids.discard(id(node))
        containers = [c for c in children if isinstance(c, Mapping | list | tuple)]
        height[id(node)] = 1 + max((height[id(c)] for c in containers), default=0)
        size[id(node)] = len(children) + sum(size[id(c)] for c in containers)
        if height[id(node)] > MAX_DEPTH:
            return f"nests lists or mappings more than {MAX_DEPTH} levels deep"
        if size[id(node)] > MAX_NODES:
            return f"expands to more than {MAX_NODES} values"
    return None


def _short(value: Any, limit: int = 60) -> str:
    """A one-line repr of a value, cut to ``limit`` characters (and safe for huge integers)."""
    try:
        text = repr(value)
    except ValueError:  # int too large to convert to text (Python's 4300-digit limit)
        text = f"<integer with more than {4300} digits>"
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return f"{type(value).__name__} {_short(value)}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())

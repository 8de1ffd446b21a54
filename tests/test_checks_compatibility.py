"""Construction-time compatibility checks: one golden table every rule runs against."""

from __future__ import annotations

import functools
import re
import warnings

import keras
import pytest
import tensorflow as tf

from trainkit import CompatibilityError
from trainkit.checks import (
    COMPATIBILITY_CODES,
    COMPATIBILITY_ERROR_CODES,
    COMPATIBILITY_RULES,
    COMPATIBILITY_WARNING_CODES,
    LossInfo,
    check_compatibility,
    describe_loss,
    find_outputs,
    hidden_layers,
)
from trainkit.resolve import get_loss

OK = "ok"


class CustomLoss(keras.losses.Loss):
    """A loss the rules do not know: loss-based rules must be skipped, not refuse it."""

    def call(self, y_true, y_pred):
        return keras.ops.mean(keras.ops.abs(y_true - y_pred), axis=-1)


@functools.cache
def build(arch: str, units: int, act: str | None = None) -> keras.Model:
    """One small model per distinct architecture, built once (never fitted)."""
    L = keras.layers
    if arch == "dense":  # Dense(units, activation=act)
        return keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(units, activation=act)])
    if arch == "act_layer":  # Dense(units) followed by a separate Activation layer
        return keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(units),
                                 L.Dropout(0.1), L.Activation(act)])
    if arch == "softmax_layer":
        return keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(units), L.Softmax()])
    if arch == "relu_layer":
        return keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(units), L.ReLU()])
    if arch == "functional":
        inp = keras.Input((4,))
        h = L.Dropout(0.2)(L.Dense(8, activation="tanh")(inp))
        return keras.Model(inp, L.Dense(units, activation=act, name="head")(h))
    if arch == "unbuilt":  # Sequential without an Input: not built yet
        return keras.Sequential([L.Dense(8, activation="relu"), L.Dense(units, activation=act)])
    if arch == "linear_hidden":
        return keras.Sequential([keras.Input((4,)), L.Dense(8), L.Dense(8), L.Dense(units, activation=act)])
    if arch == "float16":  # mixed precision, as keras.mixed_precision.set_global_policy sets it
        return keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu", dtype="mixed_float16"), L.Dense(units, activation=act, dtype="float32")])
    if arch == "no_hidden":  # logistic / linear regression: linear on purpose
        return keras.Sequential([keras.Input((4,)), L.Dense(units, activation=act)])
    if arch == "rescaled":  # sigmoid scaled to [0, 100] on purpose
        return keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"),
                                 L.Dense(units, activation=act), L.Rescaling(100.0)])
    if arch == "time_distributed":  # a prediction per time step; was an unknown layer, and no rule judged its activation
        return keras.Sequential([keras.Input((5, 4)), L.GRU(8, return_sequences=True), L.TimeDistributed(L.Dense(units, activation=act))])
    if arch.startswith("bn_base"):  # a fine-tuned base called as base(x, training=False)
        return bn_base_model(frozen="frozen" in arch, bn_frozen="bn_frozen" in arch, flag="no_flag" not in arch, units=units, act=act)
    raise ValueError(arch)


def bn_base_model(*, frozen: bool = False, bn_frozen: bool = False, flag: bool = True, units: int = 1, act: str | None = "sigmoid") -> keras.Model:
    """A small Sequential base holding a BatchNormalization, nested in a functional model."""
    L = keras.layers
    base = keras.Sequential([keras.Input((4,)), L.Dense(8), L.BatchNormalization(name="base_bn"), L.ReLU()], name="base")
    base.trainable = not frozen
    if bn_frozen:
        for layer in base.layers:
            if isinstance(layer, L.BatchNormalization):
                layer.trainable = False
    inputs = keras.Input((4,))
    hidden = base(inputs, training=False) if flag else base(inputs)
    return keras.Model(inputs, L.Dense(units, activation=act)(hidden))


def loss_of(spec):
    return CustomLoss() if spec == "custom" else get_loss(spec)


BCE_LOGITS = {"name": "bce", "from_logits": True}
CCE_LOGITS = {"name": "categorical_crossentropy", "from_logits": True}
SCCE_LOGITS = {"name": "scce", "from_logits": True}

# (task, (architecture, units, activation), loss, expected code or OK, num_classes)
GOLDEN = [
    # --- binary ------------------------------------------------------------------------------
    ("binary", ("dense", 1, "sigmoid"), "bce", OK, None),
    ("binary", ("dense", 1, None), BCE_LOGITS, OK, None),
    ("binary", ("dense", 2, "softmax"), "scce", OK, None),
    ("binary", ("dense", 2, None), SCCE_LOGITS, OK, None),
    ("binary", ("dense", 2, "softmax"), "categorical_crossentropy", OK, None),
    ("binary", ("dense", 1, "sigmoid"), "binary_focal_crossentropy", OK, None),
    ("binary", ("dense", 1, None), "hinge", OK, None),
    ("binary", ("functional", 1, "sigmoid"), "bce", OK, None),
    ("binary", ("unbuilt", 1, "sigmoid"), "bce", OK, None),
    ("binary", ("unbuilt", 1, None), BCE_LOGITS, OK, None),
    ("binary", ("no_hidden", 1, None), BCE_LOGITS, OK, None),
    ("binary", ("dense", 1, "sigmoid"), "custom", OK, None),
    ("binary", ("dense", 1, "sigmoid"), BCE_LOGITS, "double-activation", None),
    ("binary", ("act_layer", 1, "sigmoid"), BCE_LOGITS, "double-activation", None),
    ("binary", ("unbuilt", 1, "sigmoid"), BCE_LOGITS, "double-activation", None),
    ("binary", ("dense", 1, None), "bce", "missing-output-activation", None),
    ("binary", ("functional", 1, None), "bce", "missing-output-activation", None),
    ("binary", ("dense", 1, "softmax"), "bce", "softmax-single-unit", None),
    ("binary", ("softmax_layer", 1, None), "bce", "softmax-single-unit", None),
    ("binary", ("dense", 1, "softmax"), "custom", "softmax-single-unit", None),
    ("binary", ("dense", 1, "sigmoid"), "mse", "regression-loss-for-classification", None),
    ("binary", ("dense", 1, "sigmoid"), "mae", "regression-loss-for-classification", None),
    ("binary", ("dense", 1, "sigmoid"), "huber", "regression-loss-for-classification", None),
    ("binary", ("dense", 2, "softmax"), "bce", "units-mismatch", None),
    ("binary", ("dense", 1, "sigmoid"), "scce", "units-mismatch", None),
    ("binary", ("dense", 1, "relu"), "bce", "wrong-output-activation", None),
    ("binary", ("dense", 1, "tanh"), "bce", "wrong-output-activation", None),
    ("binary", ("dense", 1, "tanh"), BCE_LOGITS, "wrong-output-activation", None),
    ("binary", ("relu_layer", 1, None), "bce", "wrong-output-activation", None),
    ("binary", ("dense", 1, "sigmoid"), "hinge", "wrong-output-activation", None),
    ("binary", ("linear_hidden", 1, "sigmoid"), "bce", "linear-hidden-layers", None),
    ("binary", ("float16", 1, "sigmoid"), "bce", "float16-without-loss-scaling", None),
    ("binary", ("bn_base", 1, "sigmoid"), "bce", "batchnorm-training-flag-ignored", None),
    ("binary", ("bn_base_frozen", 1, "sigmoid"), "bce", OK, None),
    ("binary", ("bn_base_bn_frozen", 1, "sigmoid"), "bce", OK, None),
    ("binary", ("bn_base_no_flag", 1, "sigmoid"), "bce", OK, None),
    # --- multiclass --------------------------------------------------------------------------
    ("multiclass", ("dense", 3, "softmax"), "scce", OK, 3),
    ("multiclass", ("dense", 3, None), SCCE_LOGITS, OK, 3),
    ("multiclass", ("dense", 3, "softmax"), "categorical_crossentropy", OK, None),
    ("multiclass", ("softmax_layer", 3, None), "categorical_crossentropy", OK, 3),
    ("multiclass", ("act_layer", 3, "softmax"), "scce", OK, None),
    ("multiclass", ("dense", 3, None), CCE_LOGITS, OK, None),
    ("multiclass", ("functional", 3, "softmax"), "kl_divergence", OK, None),
    ("multiclass", ("dense", 3, None), "categorical_hinge", OK, None),
    ("multiclass", ("act_layer", 3, "softmax"), CCE_LOGITS, "double-activation", None),
    ("multiclass", ("softmax_layer", 3, None), SCCE_LOGITS, "double-activation", None),
    ("multiclass", ("dense", 3, None), "categorical_crossentropy", "missing-output-activation", None),
    ("multiclass", ("dense", 3, None), "kl_divergence", "missing-output-activation", None),
    ("multiclass", ("dense", 3, "softmax"), "mse", "regression-loss-for-classification", None),
    ("multiclass", ("dense", 1, "softmax"), "scce", "softmax-single-unit", None),
    ("multiclass", ("dense", 3, "softmax"), "scce", "units-mismatch", 5),
    ("multiclass", ("dense", 1, None), SCCE_LOGITS, "units-mismatch", None),
    ("multiclass", ("dense", 3, "sigmoid"), "categorical_crossentropy", "wrong-output-activation", None),
    ("multiclass", ("dense", 3, "relu"), "scce", "wrong-output-activation", None),
    ("multiclass", ("dense", 3, "relu"), SCCE_LOGITS, "wrong-output-activation", None),
    ("multiclass", ("dense", 3, "softmax"), "bce", "loss-task-mismatch", None),
    ("multiclass", ("time_distributed", 3, "softmax"), "scce", OK, None),
    ("multiclass", ("time_distributed", 3, "softmax"), SCCE_LOGITS, "double-activation", None),
    ("multiclass", ("time_distributed", 3, None), "scce", "missing-output-activation", None),
    # --- multilabel --------------------------------------------------------------------------
    ("multilabel", ("dense", 3, "sigmoid"), "bce", OK, 3),
    ("multilabel", ("dense", 3, None), BCE_LOGITS, OK, None),
    ("multilabel", ("dense", 3, "softmax"), "bce", "wrong-output-activation", None),
    ("multilabel", ("softmax_layer", 3, None), BCE_LOGITS, "double-activation", None),
    ("multilabel", ("dense", 3, "softmax"), "categorical_crossentropy", "loss-task-mismatch", None),
    ("multilabel", ("dense", 3, "sigmoid"), "bce", "units-mismatch", 4),
    ("multilabel", ("dense", 3, "sigmoid"), "mse", "regression-loss-for-classification", None),
    # --- regression --------------------------------------------------------------------------
    ("regression", ("dense", 1, None), "mse", OK, None),
    ("regression", ("dense", 1, None), "mae", OK, None),
    ("regression", ("dense", 1, None), "huber", OK, None),
    ("regression", ("dense", 3, None), "log_cosh", OK, None),
    ("regression", ("functional", 1, None), "mse", OK, None),
    ("regression", ("no_hidden", 1, None), "mse", OK, None),
    ("regression", ("dense", 1, "exponential"), "poisson", OK, None),
    ("regression", ("rescaled", 1, "sigmoid"), "mse", OK, None),
    ("regression", ("dense", 1, None), "custom", OK, None),
    ("regression", ("dense", 1, None), "bce", "classification-loss-for-regression", None),
    ("regression", ("dense", 3, "softmax"), "scce", "classification-loss-for-regression", None),
    ("regression", ("dense", 1, "softmax"), "mse", "softmax-single-unit", None),
    ("regression", ("dense", 1, None), "poisson", "wrong-output-activation", None),
    ("regression", ("dense", 1, "sigmoid"), "mse", "bounded-output-for-regression", None),
    ("regression", ("dense", 1, "relu"), "mse", "bounded-output-for-regression", None),
    ("regression", ("act_layer", 1, "tanh"), "mae", "bounded-output-for-regression", None),
    ("regression", ("time_distributed", 1, "sigmoid"), "mse", "bounded-output-for-regression", None),
    ("regression", ("linear_hidden", 1, None), "mse", "linear-hidden-layers", None),
]


def _case_id(case) -> str:
    task, (arch, units, act), loss, expected, classes = case
    loss_name = loss if isinstance(loss, str) else f"{loss['name']}-logits"
    return f"{task}-{arch}{units}-{act or 'linear'}-{loss_name}{'-k' + str(classes) if classes else ''}->{expected}"


@pytest.mark.parametrize("case", GOLDEN, ids=[_case_id(c) for c in GOLDEN])
def test_golden_table(case):
    task, arch, loss_spec, expected, num_classes = case
    model, loss = build(*arch), loss_of(loss_spec)
    if expected in COMPATIBILITY_ERROR_CODES:
        with pytest.raises(CompatibilityError) as info:
            check_compatibility(model, loss, task, num_classes=num_classes)
        assert info.value.code == expected
        # What was found, why, and the fix: every error ends with a concrete instruction.
        assert any(word in info.value.message for word in ("Use ", "Remove ", "Add ", "Give "))
        # Allowing the code turns it into a recorded warning (other rules keep running).
        try:
            findings = check_compatibility(model, loss, task, num_classes=num_classes, allow={expected})
        except CompatibilityError as err:
            assert err.code != expected
        else:
            allowed = [f for f in findings if f.code == expected]
            assert allowed and allowed[0].severity == "warning" and allowed[0].evidence["allowed"]
    else:
        findings = check_compatibility(model, loss, task, num_classes=num_classes)
        codes = [f.code for f in findings]
        assert codes == ([] if expected == OK else [expected])
        assert all(f.severity == "warning" and f.advice for f in findings)


def test_golden_table_covers_every_rule_and_correct_combinations():
    assert len(GOLDEN) >= 40
    expected = {case[3] for case in GOLDEN}
    assert {rule.code for rule in COMPATIBILITY_RULES} <= expected
    assert sum(case[3] == OK for case in GOLDEN) >= 20


def test_codes_listed_in_one_place():
    required = {
        "regression-loss-for-classification", "classification-loss-for-regression",
        "softmax-single-unit", "double-activation", "missing-output-activation", "units-mismatch",
        "wrong-output-activation", "bounded-output-for-regression", "linear-hidden-layers",
    }
    assert required <= set(COMPATIBILITY_CODES)
    assert set(COMPATIBILITY_WARNING_CODES) == {"bounded-output-for-regression", "linear-hidden-layers", "float16-without-loss-scaling",
                                              "batchnorm-training-flag-ignored"}
    assert len(set(COMPATIBILITY_CODES)) == len(COMPATIBILITY_CODES)


def test_double_activation_message_names_layer_loss_and_fix():
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid", name="dense_2")(inp))
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(model, get_loss(BCE_LOGITS), "binary")
    text = str(info.value)
    assert text.startswith("[double-activation] The output layer 'dense_2' applies sigmoid")
    assert "BinaryCrossentropy(from_logits=True) applies it again" in text
    assert "Use BinaryCrossentropy(from_logits=False), or remove the activation" in text
    assert isinstance(info.value, ValueError)


def test_allowed_error_becomes_warning_that_says_so():
    findings = check_compatibility(build("dense", 1, "sigmoid"), get_loss("mse"), "binary",
                                   allow={"regression-loss-for-classification"})
    assert [f.code for f in findings] == ["regression-loss-for-classification"]
    assert findings[0].severity == "warning"
    assert findings[0].message.startswith("Allowed by allow: [regression-loss-for-classification]. ")
    assert "BinaryCrossentropy" in findings[0].advice
    # low_mse_binary_broken's users write YAML: the fix is spelled as a recipe writes it too.
    assert "(in a recipe, loss: binary_crossentropy with {type: dense, units: 1, activation: sigmoid})" in findings[0].advice
    multiclass = check_compatibility(build("dense", 3, "softmax"), get_loss("mse"), "multiclass",
                                     allow={"regression-loss-for-classification"})
    assert "loss: sparse_categorical_crossentropy, or categorical_crossentropy for one-hot labels, with " \
           "{type: dense, units: K, activation: softmax}" in multiclass[0].advice


@pytest.mark.parametrize(("loss", "says"), [("mse", True), ("mae", False)])
def test_mse_on_labels_says_that_its_chance_level_is_small(loss, says):
    # "Why is my loss already low at the start?" A first MSE of 0.227 on balanced 0/1 labels is
    # chance (0.25); only the recipe's comments said so.
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(build("dense", 1, "sigmoid"), loss_of(loss), "binary")
    assert ("0.25 for balanced classes" in info.value.message) is says


def test_binary_cross_entropy_on_a_one_channel_image_output_is_told_task_binary():
    # A grey-scale conv autoencoder (Conv2D(1, 3, activation='sigmoid'), pixels in [0, 1]) on a
    # regression task was told "use MSE with a linear output Dense(1); if the targets are really
    # classes, declare task='binary'": a Dense its model lacks, and task='binary' only for classes,
    # though binary cross-entropy on pixels in [0, 1] is what task='binary' takes.
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
                              keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")])
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(model, get_loss("bce"), "regression")
    message = info.value.message
    assert "declare task='binary', which takes probabilities" in message and "Dense(" not in message
    assert check_compatibility(model, get_loss("bce"), "binary") == []


def test_binary_cross_entropy_over_several_units_on_a_regression_task_is_told_multilabel():
    # An autoencoder reconstructing pixels in [0, 1] with binary cross-entropy (Keras's tutorial):
    # the advice named task='binary' or 'multiclass', which refuse it (units-mismatch,
    # loss-task-mismatch); 'multilabel' takes it.
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(build("dense", 3, "sigmoid"), get_loss("bce"), "regression")
    assert info.value.code == "classification-loss-for-regression" and "declare task='multilabel'" in info.value.message
    assert "task='binary'" not in info.value.message
    assert check_compatibility(build("dense", 3, "sigmoid"), get_loss("bce"), "multilabel") == []
    with pytest.raises(CompatibilityError) as info:  # one unit: the classes advice is unchanged
        check_compatibility(build("dense", 1, None), get_loss("bce"), "regression")
    assert "declare task='binary' or task='multiclass'" in info.value.message

def test_binary_cross_entropy_over_several_units_on_a_multiclass_task_is_told_multilabel_too():
    # Sigmoid + binary cross-entropy on multi-hot tags with task='multiclass' was told only of
    # softmax losses, which its rows of several 1s refuse (label-format); the loss fits them.
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(build("dense", 3, "sigmoid"), get_loss("bce"), "multiclass")
    assert info.value.code == "loss-task-mismatch"
    assert "keep the loss and declare task='multilabel' (in a recipe, task: multilabel)" in info.value.message
    assert check_compatibility(build("dense", 3, "sigmoid"), get_loss("bce"), "multilabel") == []


def test_float16_with_a_loss_scale_optimizer_is_no_warning():
    # The warning said "trainkit applies no loss scaling" to a LossScaleOptimizer, which it applies.
    model = build("float16", 1, "sigmoid")
    plain = check_compatibility(model, loss_of("bce"), "binary", optimizer=keras.optimizers.Adam())
    assert [f.code for f in plain] == ["float16-without-loss-scaling"] and "LossScaleOptimizer(" in plain[0].advice
    scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam())
    assert check_compatibility(model, loss_of("bce"), "binary", optimizer=scaled) == []


def _moving_mean_moved(model: keras.Model, layer: keras.layers.BatchNormalization) -> float:
    """How far one training-mode call on off-centre rows moves the layer's moving mean."""
    before = keras.ops.convert_to_numpy(layer.moving_mean).copy()
    model(tf.random.stateless_normal((16, 4), seed=(1, 2)) + 3.0, training=True)
    return float(abs(keras.ops.convert_to_numpy(layer.moving_mean) - before).max())


def test_batchnorm_in_a_base_called_with_training_false_is_told_keras_trains_it():
    # Keras 3 passes the model's training=True over base(x, training=False): the unfrozen base's
    # BatchNormalization normalised on each batch and moved its moving mean (0.023 in model.fit
    # and in trainkit alike), and a fine-tune's loss jumped, with no word about it.
    model = bn_base_model()
    assert _moving_mean_moved(model, model.get_layer("base").get_layer("base_bn")) > 0.01
    [finding] = check_compatibility(model, loss_of("bce"), "binary")
    assert finding.code == "batchnorm-training-flag-ignored" and finding.severity == "warning" and finding.layer == "base_bn"
    assert "'base'" in finding.message and "'base_bn'" in finding.message and "keras-team/keras#20285" in finding.message
    assert "isinstance(layer, keras.layers.BatchNormalization)]: layer.trainable = False" in finding.advice
    assert "model.builder" in finding.advice
    # The advised loop is Python that runs ("for ...: if ...: ..." on one line was a SyntaxError),
    # and freezes the base's BatchNormalization: no warning then.
    loop = re.search(r"(for layer in .*?layer\.trainable = False)", finding.advice).group(1)
    exec(loop, {"keras": keras, "base": model.get_layer("base")})  # the advice's own code
    assert not model.get_layer("base").get_layer("base_bn").trainable
    assert check_compatibility(model, loss_of("bce"), "binary") == []
    # The advised fix keeps the moving statistics still: no warning then.
    fixed = bn_base_model(bn_frozen=True)
    assert _moving_mean_moved(fixed, fixed.get_layer("base").get_layer("base_bn")) == 0.0
    assert check_compatibility(fixed, loss_of("bce"), "binary") == []


def test_batchnorm_in_a_base_reused_from_a_pretraining_model_is_told():
    # The base keeps the plain call of the model it was pretrained in (base(x)): read as called
    # both ways, the fine-tune's base(x, training=False) was not told (training loss 0.026 -> 0.56
    # at Adam 1e-5, batches of 8, in silence).
    fine_tune = bn_base_model()
    base = fine_tune.get_layer("base")
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(base(inputs)))  # the pretraining model
    assert [f.code for f in check_compatibility(fine_tune, loss_of("bce"), "binary")] == ["batchnorm-training-flag-ignored"]


def test_batchnorm_called_directly_with_training_false_is_told_too():
    # Keras 3 ignores the flag on a layer of the model's own graph as well.
    inputs = keras.Input((4,))
    norm = keras.layers.BatchNormalization(name="norm")
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dense(8, activation="relu")(norm(inputs, training=False))))
    assert _moving_mean_moved(model, norm) > 0.01
    [finding] = check_compatibility(model, loss_of("bce"), "binary")
    assert finding.code == "batchnorm-training-flag-ignored" and "trainable = False on the BatchNormalization layer 'norm'" in finding.advice
    norm.trainable = False
    assert check_compatibility(model, loss_of("bce"), "binary") == []


def test_batchnorm_inside_a_custom_layer_called_with_training_false_is_told():
    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense, self.norm = keras.layers.Dense(4), keras.layers.BatchNormalization(name="block_norm")

        def call(self, x, training=None):
            return self.norm(self.dense(x), training=training)

    inputs = keras.Input((4,))
    block = Block(name="block")
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.ReLU()(block(inputs, training=False))))
    assert _moving_mean_moved(model, block.norm) > 0.0
    [finding] = check_compatibility(model, loss_of("bce"), "binary")
    # A layer has no .layers to loop over: its BatchNormalization is named instead.
    assert "'block'" in finding.message and "trainable = False on the BatchNormalization layer 'block_norm'" in finding.advice
    assert "base.layers" not in finding.advice


def test_allow_with_a_typo_fails_loudly():
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(build("dense", 1, "sigmoid"), get_loss("bce"), "binary",
                            allow={"regresion-loss-for-classification"})
    assert info.value.code == "unknown-allow-code"
    assert 'Did you mean "regression-loss-for-classification"' in str(info.value)


def test_unknown_task_is_refused_with_suggestion():
    from trainkit.errors import UnknownNameError

    with pytest.raises(UnknownNameError) as info:
        check_compatibility(build("dense", 1, "sigmoid"), get_loss("bce"), "binar")
    assert info.value.code == "unknown-task"
    assert '"binary"' in str(info.value)


def test_several_outputs_each_checked_with_its_own_loss():
    inp = keras.Input((4,))
    h = keras.layers.Dense(8, activation="relu")(inp)
    a = keras.layers.Dense(1, activation="sigmoid", name="a")(h)
    b = keras.layers.Activation("sigmoid", name="b_act")(keras.layers.Dense(1, name="b")(h))
    model = keras.Model(inp, [a, b])
    assert check_compatibility(model, get_loss("bce"), "binary") == []
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(model, [get_loss("bce"), get_loss(BCE_LOGITS)], "binary")
    assert info.value.code == "double-activation" and "'b_act'" in info.value.message
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(model, {"a": get_loss(BCE_LOGITS), "b_act": get_loss("bce")}, "binary")
    assert info.value.code == "double-activation" and "'a'" in info.value.message


def test_subclassed_model_is_skipped_with_an_info_finding():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.out = keras.layers.Dense(1, activation="softmax")

        def call(self, x):
            return self.out(x)

    findings = check_compatibility(Sub(), get_loss("bce"), "binary")
    assert [(f.code, f.severity) for f in findings] == [("uninspectable-model", "info")]


@pytest.mark.parametrize(("inner", "says"), [("sigmoid", "stays within [0.5, 0.731]"), ("relu", "stays within [0.5, 1]")])
def test_an_output_activation_on_top_of_another_is_double_activation(inner, says):
    # Dense(1, sigmoid) then Activation(sigmoid) passed every check: its predictions never left [0.5, 0.73].
    L = keras.layers
    stacked = keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), L.Dense(1, activation=inner, name="head"), L.Activation("sigmoid")])
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(stacked, get_loss("binary_crossentropy"), "binary")
    assert info.value.code == "double-activation" and says in info.value.message and "remove activation='" + inner + "' from 'head'" in info.value.message
    # A Lambda below the sigmoid (a temperature) bounds nothing known: it was refused, "remove
    # activation='unknown' from 'temperature'", and so was a tanh under it, which it may rescale.
    temperature = [L.Dense(1, activation="tanh"), L.Lambda(lambda t: t * 3.0, name="temperature"), L.Activation("sigmoid")]
    for fine in ([L.Dense(1), L.Activation("sigmoid")], [L.Dense(1, activation="sigmoid"), L.Dropout(0.1)], temperature):
        assert check_compatibility(keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"), *fine]), get_loss("binary_crossentropy"), "binary") == []


@pytest.mark.parametrize("ending", ["sigmoid", "scaled_sigmoid", "softmax"])
def test_an_output_layer_behind_a_keras_operation_is_no_hidden_layer(ending):
    # A logistic regression ending in keras.ops.sigmoid(Dense(1)(x)), which trains since 4a6f9c6,
    # was told "The hidden layer 'dense' has no activation, so the model is linear": the output
    # chain stopped at the operation, and the Dense that gives its units counted as hidden.
    L, ops = keras.layers, keras.ops
    x = keras.Input((4,))
    if ending == "softmax":
        model, loss, task = keras.Model(x, ops.softmax(L.Dense(3)(x))), "sparse_categorical_crossentropy", "multiclass"
    else:
        logits = L.Dense(1)(x) * 2.0 if ending == "scaled_sigmoid" else L.Dense(1)(x)
        model, loss, task = keras.Model(x, ops.sigmoid(logits)), "binary_crossentropy", "binary"
    assert check_compatibility(model, get_loss(loss), task) == []
    # A hidden Dense without activation before it still is one.
    h = L.Dense(8)(x)
    assert [f.code for f in check_compatibility(keras.Model(x, ops.sigmoid(L.Dense(1)(h))), get_loss("binary_crossentropy"), "binary")] == [
        "linear-hidden-layers"]


def test_linear_hidden_layers_respects_separate_activation_layers():
    L = keras.layers
    with_act = keras.Sequential([keras.Input((4,)), L.Dense(8), L.Activation("relu"), L.Dense(1)])
    assert check_compatibility(with_act, get_loss("mse"), "regression") == []
    with_pool = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3), L.MaxPooling2D(), L.Flatten(), L.Dense(1)])
    assert check_compatibility(with_pool, get_loss("mse"), "regression") == []
    linear_conv = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3), L.BatchNormalization(), L.Flatten(), L.Dense(1)])
    findings = check_compatibility(linear_conv, get_loss("mse"), "regression")
    assert [f.code for f in findings] == ["linear-hidden-layers"]
    assert findings[0].layer == linear_conv.layers[0].name
    assert findings[0].message.startswith(f"The hidden layer '{linear_conv.layers[0].name}' has no activation, so the model is linear")
    (two,) = check_compatibility(build("linear_hidden", 1, None), get_loss("mse"), "regression")
    assert two.message.startswith("None of the 2 hidden layers (") and ") has an activation, so" in two.message


# --- model inspection ------------------------------------------------------------------------

def test_find_outputs_reads_trailing_activation_layers_and_ranges():
    L = keras.layers
    model = keras.Sequential([keras.Input((4,)), L.Dense(3, name="logits"), L.Dropout(0.5), L.Softmax(name="sm")])
    (out,) = find_outputs(model)
    assert (out.layer, out.activation_layer, out.activation, out.units) == ("logits", "sm", "softmax", 3)
    relu6 = keras.Sequential([keras.Input((4,)), L.Dense(1), L.ReLU(max_value=6)])
    assert find_outputs(relu6)[0].activation == "relu6"
    assert find_outputs(relu6)[0].output_range == (0.0, 6.0)
    fn = keras.Sequential([keras.Input((4,)), L.Dense(1, activation=keras.activations.sigmoid)])
    assert find_outputs(fn)[0].activation == "sigmoid"
    scaled = build("rescaled", 1, "sigmoid")
    out = find_outputs(scaled)[0]
    assert out.rescaled and out.output_range == (0.0, 100.0) and not out.is_probability
    custom = keras.Sequential([keras.Input((4,)), L.Dense(1, activation=lambda t: t * 2)])
    assert find_outputs(custom)[0].activation == "unknown"


def test_find_outputs_handles_nested_and_unbuilt_models():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="relu"),
                              keras.layers.Dense(2, activation="softmax", name="inner_out")])
    inp = keras.Input((4,))
    outer = keras.Model(inp, inner(inp))
    (out,) = find_outputs(outer)
    assert (out.layer, out.activation, out.units) == ("inner_out", "softmax", 2)
    (unbuilt,) = find_outputs(build("unbuilt", 3, "softmax"))
    assert (unbuilt.activation, unbuilt.units, unbuilt.shape) == ("softmax", 3, None)


def test_hidden_layers_lists_activations():
    layers = hidden_layers(build("functional", 1, "sigmoid"))
    assert [(h.class_name, h.activation, h.linear) for h in layers] == [
        ("Dense", "tanh", False), ("Dropout", None, True)]


def test_describe_loss_reads_kind_and_from_logits():
    assert describe_loss(get_loss(BCE_LOGITS)).describe() == "BinaryCrossentropy(from_logits=True)"
    assert describe_loss("mse").kind == "regression"
    assert describe_loss(keras.losses.sparse_categorical_crossentropy).kind == "sparse"
    assert describe_loss(CustomLoss()).kind is None


def test_a_function_of_ones_own_under_a_keras_name_is_trained_as_written():
    # A user's `mse` (scaled by 100) was swapped for Keras's MeanSquaredError by its name: trainkit
    # trained and logged 4.13 where model.fit logged 322.8; a `binary_crossentropy` of one's own
    # without clipping was read as Keras's, whose "no log(0)" the nan-loss advice then trusted.
    def mse(y_true, y_pred):
        return 100.0 * keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)

    def binary_crossentropy(y_true, y_pred):
        return -keras.ops.mean(y_true * keras.ops.log(y_pred), axis=-1)

    y, p = tf.constant([[1.0], [0.0]]), tf.constant([[0.5], [0.0]])
    assert float(get_loss(mse)(y, p)) == pytest.approx(12.5)
    assert describe_loss(mse) == LossInfo("mse", None)
    assert describe_loss(binary_crossentropy) == LossInfo("binary_crossentropy", None)
    # Keras's own functions are still read as their classes, and any other function by its own name.
    assert isinstance(get_loss(keras.losses.mean_squared_error), keras.losses.MeanSquaredError)
    assert describe_loss(keras.losses.binary_crossentropy).kind == "binary"
    assert describe_loss(lambda y_true, y_pred: y_pred).name == "lambda"


def test_a_keras_loss_subclass_with_a_call_of_its_own_is_the_users_loss():
    # Its unclipped log made a NaN that nan-loss put down to "Keras's own loss ... no log(0)".
    class RawBCE(keras.losses.BinaryCrossentropy):
        def call(self, y_true, y_pred):
            return -keras.ops.mean(y_true * keras.ops.log(y_pred) + (1 - y_true) * keras.ops.log(1 - y_pred), axis=-1)

    class Smoothed(keras.losses.CategoricalCrossentropy):  # Keras's computation, other defaults: still Keras's
        def __init__(self, **kwargs):
            super().__init__(label_smoothing=0.1, **kwargs)

    assert describe_loss(RawBCE()) == LossInfo("RawBCE", None)
    assert describe_loss(Smoothed()).kind == "categorical"


def test_allow_suggests_only_codes_that_can_be_allowed():
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(build("dense", 1, "sigmoid"), get_loss("bce"), "binary", allow=["unknown-alow-code"])
    assert "Did you mean" not in info.value.message and "unknown-task" not in info.value.message


@pytest.mark.parametrize(("task", "loss", "code"), [
    ("multilabel", "bce", "wrong-output-activation"),
    ("multiclass", SCCE_LOGITS, "double-activation"),
    ("multiclass", "scce", OK),
])
def test_tf_nn_softmax_is_read_as_softmax(task, loss, code):
    # tf.nn.softmax is named softmax_v2: Dense(4, activation=tf.nn.softmax), as TensorFlow's own
    # tutorials write it, was an unknown activation that no rule judged (softmax for multilabel
    # passed, where activation="softmax" is refused).
    (output,) = find_outputs(build("dense", 4, tf.nn.softmax))
    assert output.activation == "softmax"
    if code == OK:
        check_compatibility(build("dense", 4, tf.nn.softmax), get_loss(loss), task)
        return
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(build("dense", 4, tf.nn.softmax), get_loss(loss), task)
    assert info.value.code == code


@pytest.mark.parametrize(("task", "arch", "loss", "code", "recipe"), [
    ("binary", ("dense", 1, "sigmoid"), BCE_LOGITS, "double-activation", "loss: binary_crossentropy"),
    ("binary", ("dense", 1, None), "bce", "missing-output-activation",
     "loss: {name: binary_crossentropy, from_logits: true}, or activation: sigmoid"),
    ("binary", ("dense", 1, "relu"), "bce", "wrong-output-activation", "activation: sigmoid on the output layer"),
    ("binary", ("dense", 1, "softmax"), "bce", "softmax-single-unit", "{type: dense, units: 1, activation: sigmoid}"),
    ("binary", ("dense", 1, "sigmoid"), "categorical_crossentropy", "units-mismatch", "{type: dense, units: 2, activation: softmax}"),
    ("multiclass", ("dense", 3, "softmax"), "scce", "units-mismatch", "{type: dense, units: 4, activation: softmax}"),
    ("regression", ("dense", 1, None), "bce", "classification-loss-for-regression", "loss: mse with no activation"),
])
def test_compatibility_fixes_say_how_a_recipe_writes_them(task, arch, loss, code, recipe):
    # A recipe's users write YAML: "Use Dense(4, activation='softmax')" or "Use
    # BinaryCrossentropy(from_logits=False)" named Python classes they never construct.
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(build(*arch), loss_of(loss), task, num_classes=4 if task == "multiclass" else None)
    assert info.value.code == code
    assert f"(in a recipe, {recipe}" in info.value.message, info.value.message


def test_three_sigmoid_units_on_a_binary_task_are_not_told_to_keep_two():
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(build("dense", 3, "sigmoid"), get_loss("bce"), "binary")
    assert info.value.code == "units-mismatch" and "keep 2 units" not in info.value.message
    assert "use 2 units with softmax" in info.value.message
    assert "{type: dense, units: 2, activation: softmax} with loss: sparse_categorical_crossentropy" in info.value.message


def test_several_sigmoid_units_on_a_binary_task_are_told_multilabel():
    # Multi-hot labels with a sigmoid head declared task='binary' were told only Dense(1), which
    # their (n, 4) labels cannot train: the head is a multilabel one.
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(build("dense", 4, "sigmoid"), get_loss("bce"), "binary")
    assert info.value.code == "units-mismatch"
    assert "keep Dense(4) and declare task='multilabel' (in a recipe, task: multilabel)" in info.value.message


def test_one_output_unit_for_four_classes_is_one_unit_not_one_units():
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(build("dense", 1, "sigmoid"), get_loss("bce"), "multilabel", num_classes=4)
    assert info.value.code == "units-mismatch" and "has 1 unit but there are 4 classes" in info.value.message


def test_linear_hidden_layers_say_the_recipe_activation_key():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1, activation="sigmoid")])
    found = check_compatibility(model, get_loss("bce"), "binary")
    assert [f.code for f in found] == ["linear-hidden-layers"]
    assert "(in a recipe, activation: relu on the hidden dense layers)" in found[0].advice


def test_three_softmax_units_on_a_binary_task_are_not_told_they_are_a_single_unit():
    # A 3-class image directory trained with task='binary': "with a single unit there is only
    # class 0" was said of 3 units.
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(build("dense", 3, "softmax"), get_loss("scce"), "binary")
    assert info.value.code == "units-mismatch" and "single unit" not in info.value.message
    assert "its 1 other unit stands for classes no 0/1 label holds" in info.value.message
    assert "task='multiclass'" in info.value.message
    with pytest.raises(CompatibilityError) as info:
        check_compatibility(build("dense", 1, "softmax"), get_loss("scce"), "binary", allow=["softmax-single-unit"])
    assert "with a single unit there is only class 0" in info.value.message and "multiclass" not in info.value.message


# -- a model compiled before it was given to a Trainer -------------------------------------------


def _sigmoid_model(**compiled: object) -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    if compiled:
        model.compile(**compiled)
    return model


@pytest.mark.parametrize(("compiled", "given"), [
    ({}, {"loss": "binary_crossentropy", "optimizer": "sgd", "metrics": ["accuracy"]}),  # never compiled
    ({"loss": "binary_crossentropy", "optimizer": "adam", "metrics": ["accuracy"]}, {"loss": "binary_crossentropy", "optimizer": "adam", "metrics": ["accuracy"]}),
    # The same settings spelt another way: objects for names, "acc", a class's default name, weighted_metrics.
    # (Adam(0.01) beside "adam" was taken as the same: the learning rate is compared now.)
    ({"loss": keras.losses.BinaryCrossentropy(), "optimizer": keras.optimizers.Adam(0.001), "metrics": ["acc", keras.metrics.AUC()]},
     {"loss": "binary_crossentropy", "optimizer": "adam", "metrics": ["accuracy", "AUC"]}),
    ({"loss": "binary_crossentropy", "optimizer": "adam", "weighted_metrics": ["mae"]},
     {"loss": "binary_crossentropy", "optimizer": "adam", "metrics": [keras.metrics.MeanAbsoluteError()]}),
    ({"optimizer": "adam"}, {"loss": "binary_crossentropy", "optimizer": "adam"}),  # compiled without a loss
    # A bare compile (or one for jit_compile or steps_per_execution alone) chose no optimizer: Keras's
    # default RMSprop() was said "compiled with optimizer RMSprop (trainkit uses Adam)".
    ({"jit_compile": False}, {"loss": "binary_crossentropy", "optimizer": "adam"}),
    ({"steps_per_execution": 4}, {"loss": "binary_crossentropy", "optimizer": "adam"}),
    # The accuracy "accuracy" picks, named: it was "metrics [binary_accuracy] (trainkit uses [accuracy])".
    ({"loss": "binary_crossentropy", "optimizer": "adam", "metrics": ["binary_accuracy"]}, {"loss": "binary_crossentropy", "optimizer": "adam", "metrics": ["accuracy"]}),
    ({"loss": "binary_crossentropy", "optimizer": "adam", "metrics": [keras.metrics.BinaryAccuracy()]},
     {"loss": "binary_crossentropy", "optimizer": "adam", "metrics": ["acc"]}),
    ({"loss": "binary_crossentropy", "optimizer": "adam", "metrics": ["accuracy"]}, {"loss": "binary_crossentropy", "optimizer": "adam", "metrics": ["binary_accuracy"]}),
])
def test_a_compile_that_agrees_with_the_trainer_or_none_says_nothing(compiled, given):
    from trainkit import Trainer

    trainer = Trainer(_sigmoid_model(**compiled), task="binary", **given)
    assert [f for f in trainer.findings if f.code == "compile-ignored"] == []


def test_a_bare_compile_says_nothing_but_a_chosen_rmsprop_is_named():
    from trainkit import Trainer

    model = _sigmoid_model()
    model.compile()  # Keras's defaults: optimizer="rmsprop", no loss, no metrics
    assert [f for f in Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary").findings if f.code == "compile-ignored"] == []
    # An RMSprop of other settings, or the default one beside a loss, was chosen and dropped.
    for compiled in ({"optimizer": keras.optimizers.RMSprop(0.01)}, {"loss": "binary_crossentropy"}):
        trainer = Trainer(_sigmoid_model(**compiled), loss="binary_crossentropy", optimizer="adam", task="binary")
        (found,) = [f for f in trainer.findings if f.code == "compile-ignored"]
        assert found.evidence == {"optimizer_compiled": "RMSprop", "optimizer_used": "Adam"}


def test_a_compiled_optimizers_learning_rate_and_a_metrics_settings_are_compared():
    # compile(optimizer=Adam(1e-5)) then Trainer(optimizer="adam") trained at 1e-3 in silence, and
    # compile(metrics=[AUC(curve="PR")]) beside the Trainer's "auc" (a ROC AUC) too: only the
    # optimizer's class and the metric's name were compared.
    from trainkit import Trainer

    def found(compiled: dict, **given: object) -> list:
        model = _sigmoid_model(loss="binary_crossentropy", **compiled)
        given = {"loss": "binary_crossentropy", "optimizer": "adam", **given}
        if given["optimizer"] == "compiled":
            given["optimizer"] = model.optimizer
        return [f for f in Trainer(model, task="binary", **given).findings if f.code == "compile-ignored"]

    (one,) = found({"optimizer": keras.optimizers.Adam(1e-5)})
    assert one.evidence == {"optimizer_compiled": "Adam(learning_rate=1e-05)", "optimizer_used": "Adam(learning_rate=0.001)"}
    (one,) = found({"optimizer": "adam"}, optimizer=keras.optimizers.Adam(1e-4))  # compile keeps Adam(), not the name
    assert one.evidence == {"optimizer_compiled": "Adam(learning_rate=0.001)", "optimizer_used": "Adam(learning_rate=0.0001)"}
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    (one,) = found({"optimizer": keras.optimizers.SGD(schedule)}, optimizer=keras.optimizers.SGD(0.1))
    assert one.evidence["optimizer_compiled"].startswith("SGD(learning_rate=ExponentialDecay(initial_learning_rate=0.1, decay_steps=10")
    # A callable rate's config is a lambda's bytecode in base64, or a function's name.
    (one,) = found({"optimizer": keras.optimizers.Adam(lambda: 0.01)})
    assert one.evidence["optimizer_compiled"] == "Adam(learning_rate=a lambda)"
    (one,) = found({"optimizer": "adam", "metrics": [keras.metrics.AUC(curve="PR")]}, metrics=["auc"])
    assert one.evidence == {"metrics_compiled": "[auc(curve='PR')]", "metrics_used": "[auc]"}
    (one,) = found({"optimizer": "adam", "metrics": [keras.metrics.BinaryAccuracy(threshold=0.7)]}, metrics=["accuracy"])
    assert one.evidence == {"metrics_compiled": "[accuracy(threshold=0.7)]", "metrics_used": "[accuracy]"}
    # The same settings spelt another way, or the compiled optimizer itself: nothing.
    for compiled, given in (({"optimizer": keras.optimizers.Adam(1e-5)}, {"optimizer": {"name": "adam", "learning_rate": 1e-5}}),
                            ({"optimizer": keras.optimizers.Adam(1e-5)}, {"optimizer": "compiled"}),
                            ({"optimizer": keras.optimizers.SGD(schedule)}, {"optimizer": keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9))}),
                            ({"optimizer": "adam", "metrics": [keras.metrics.AUC(curve="PR")]}, {"metrics": [{"name": "auc", "curve": "PR"}]}),
                            ({"optimizer": "adam", "metrics": [keras.metrics.Precision(thresholds=0.7), "mae"]},
                             {"metrics": [{"name": "precision", "thresholds": 0.7}, keras.metrics.MeanAbsoluteError()]})):
        assert found(compiled, **given) == [], (compiled, given)


class _RateObject:
    def __call__(self) -> float:
        return 0.01


class _ScheduleWithoutConfig(keras.optimizers.schedules.LearningRateSchedule):
    def __call__(self, step: object) -> float:
        return 0.01


def _rate_of(step: object = None, base: float = 0.01) -> float:
    return base


def test_a_callable_learning_rate_keras_cannot_serialize_is_compared_with_a_constant_one():
    # compile(optimizer=Adam(partial(f, base=0.01))), Adam(an object with __call__) or Adam(a schedule
    # without get_config) beside the Trainer's "adam" (1e-3) said nothing: Keras cannot serialize
    # those rates, and a rate that could not be read was not compared.
    from trainkit import Trainer

    def found(rate: object, given: object) -> list:
        model = _sigmoid_model(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(rate))
        given = model.optimizer if given == "compiled" else given
        return [f for f in Trainer(model, task="binary", loss="binary_crossentropy", optimizer=given).findings if f.code == "compile-ignored"]

    for rate, text in ((functools.partial(_rate_of, base=0.01), "a partial of _rate_of"), (_RateObject(), "a _RateObject object"),
                       (_ScheduleWithoutConfig(), "a _ScheduleWithoutConfig object")):
        (one,) = found(rate, "adam")
        assert one.evidence == {"optimizer_compiled": f"Adam(learning_rate={text})", "optimizer_used": "Adam(learning_rate=0.001)"}
        # The very same rate, in the compiled optimizer or in another: nothing.
        assert found(rate, "compiled") == [] and found(rate, keras.optimizers.Adam(rate)) == []
    # Two callables it cannot read may compute the same rates: nothing said.
    assert found(functools.partial(_rate_of, base=0.01), keras.optimizers.Adam(functools.partial(_rate_of, base=0.01))) == []
    assert found(_RateObject(), keras.optimizers.Adam(_RateObject())) == []


class _Rates:
    def rate(self) -> float:
        return 0.01

    def warmup(self) -> float:
        return 0.001


def test_a_bound_method_learning_rate_is_named_in_compile_ignored():
    # A bound method's config is its name alone, and was told as a class without a config: Adam(s.rate)
    # beside Adam(s.warmup) read "Adam(learning_rate=method()) (trainkit uses Adam(learning_rate=method()))".
    from trainkit import Trainer

    rates = _Rates()
    model = _sigmoid_model(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(rates.rate))
    (found,) = [f for f in Trainer(model, task="binary", loss="binary_crossentropy", optimizer=keras.optimizers.Adam(rates.warmup)).findings
                if f.code == "compile-ignored"]
    assert found.evidence == {"optimizer_compiled": "Adam(learning_rate=the method rate)", "optimizer_used": "Adam(learning_rate=the method warmup)"}


def test_a_metric_mapping_s_settings_compare_as_the_metric_it_makes():
    # A Trainer metric mapping was compared by its raw values: {curve: pr} (AUC takes "pr", its
    # config says "PR") and {name: accuracy, threshold: 0.7} (the Trainer makes a BinaryAccuracy
    # of it; "accuracy" names keras's Accuracy, which has no threshold) were told apart from the
    # same metric compiled.
    from trainkit import Trainer

    for compiled, given in ((keras.metrics.AUC(curve="PR"), {"name": "auc", "curve": "pr"}),
                            (keras.metrics.BinaryAccuracy(threshold=0.7), {"name": "accuracy", "threshold": 0.7})):
        model = _sigmoid_model(loss="binary_crossentropy", optimizer="adam", metrics=[compiled])
        trainer = Trainer(model, task="binary", loss="binary_crossentropy", optimizer="adam", metrics=[given])
        assert [f for f in trainer.findings if f.code == "compile-ignored"] == [], given
    # Another setting still is one.
    model = _sigmoid_model(loss="binary_crossentropy", optimizer="adam", metrics=[keras.metrics.BinaryAccuracy(threshold=0.7)])
    (one,) = [f for f in Trainer(model, task="binary", loss="binary_crossentropy", optimizer="adam", metrics=[{"name": "accuracy", "threshold": 0.6}]).findings
              if f.code == "compile-ignored"]
    assert one.evidence == {"metrics_compiled": "[accuracy(threshold=0.7)]", "metrics_used": "[accuracy(threshold=0.6)]"}


def test_compiled_metrics_that_are_the_ones_the_trainer_makes_are_no_difference():
    # A logits model compiled with AUC(from_logits=True) or BinaryAccuracy(threshold=0) beside
    # metrics=["auc"] / ["accuracy"] (or their mappings), of which the Trainer makes just those,
    # was told "metrics [auc(from_logits=True)] (trainkit uses [auc])".
    from trainkit import Trainer

    bce = keras.losses.BinaryCrossentropy(from_logits=True)

    def found(compiled, given):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer="adam", loss=bce, metrics=[compiled])
        return [f for f in Trainer(model, task="binary", loss=bce, optimizer="adam", metrics=[given]).findings if f.code == "compile-ignored"]

    for compiled, given in ((keras.metrics.AUC(from_logits=True), "auc"), (keras.metrics.AUC(from_logits=True), {"name": "auc"}),
                            (keras.metrics.BinaryAccuracy(threshold=0.0), "accuracy"),
                            (keras.metrics.BinaryAccuracy(threshold=0.0), {"name": "accuracy"})):
        assert found(compiled, given) == [], given
    # Another setting still is one.
    (one,) = found(keras.metrics.AUC(from_logits=True, curve="PR"), "auc")
    assert one.evidence["metrics_compiled"] == "[auc(curve='PR', from_logits=True)]"


def test_a_compiled_loss_with_an_array_setting_is_compared_not_raised():
    # A custom loss whose get_config holds an array (class weights): its settings were compared
    # with ==, whose elementwise answer has no truth value, and Trainer(...) raised ValueError.
    import numpy as np

    from trainkit import Trainer

    class Weighted(keras.losses.Loss):
        def __init__(self, weights=None, name="weighted"):
            super().__init__(name=name)
            self.weights = np.asarray([1.0] if weights is None else weights, "float32")

        def call(self, y_true, y_pred):
            return keras.ops.mean(self.weights * (y_true - y_pred) ** 2, axis=-1)

        def get_config(self):
            return {**super().get_config(), "weights": self.weights}

    loss = Weighted([1.0, 2.0])
    trainer = Trainer(_sigmoid_model(loss=loss, optimizer="adam"), loss=loss, optimizer="adam", task="binary")
    assert [f for f in trainer.findings if f.code == "compile-ignored"] == []
    trainer = Trainer(_sigmoid_model(loss=loss, optimizer="adam"), loss=Weighted([1.0, 3.0]), optimizer="adam", task="binary")
    (found,) = [f for f in trainer.findings if f.code == "compile-ignored"]
    assert "weights=array([1., 2.]" in found.evidence["loss_compiled"]


def test_a_compile_the_trainer_does_not_train_with_is_one_warning_naming_both(capsys):
    # model.compile(loss="mse", optimizer="sgd") then Trainer(model, loss=..., optimizer="adam")
    # trained with the Trainer's in silence: Keras users compile first, and thought theirs ran.
    import numpy as np

    from trainkit import Trainer

    model = _sigmoid_model(loss="mse", optimizer="sgd", metrics=["accuracy", "mae"])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", metrics=["accuracy"])
    (found,) = [f for f in trainer.findings if f.code == "compile-ignored"]
    assert found.severity == "warning"
    assert ("loss MeanSquaredError() (trainkit uses BinaryCrossentropy(from_logits=False)); optimizer SGD (trainkit uses Adam); "
            "metrics [accuracy, mean_absolute_error] (trainkit uses [accuracy])") in found.message
    assert found.evidence == {"loss_compiled": "MeanSquaredError()", "optimizer_compiled": "SGD", "metrics_compiled": "[accuracy, mean_absolute_error]",
                              "loss_used": "BinaryCrossentropy(from_logits=False)", "optimizer_used": "Adam", "metrics_used": "[accuracy]"}
    assert "optimizer=model.optimizer" in found.advice
    x = np.random.default_rng(0).normal(size=(16, 4))
    y = (x[:, 0] > 0).astype(int)
    trainer.fit(x, y, epochs=1, verbose=2)
    trainer.fit(x, y, epochs=1, verbose=2)
    assert capsys.readouterr().err.count("[compile-ignored]") == 1  # said once, before the first fit
    assert [f.code for f in trainer.findings].count("compile-ignored") == 1


def test_per_output_losses_as_a_dict_or_a_list_are_compared_output_by_output():
    # compile(loss={"a": "mse", "b": ...}) and Trainer(loss=["mse", ...]) were told "loss {...}
    # (trainkit uses [...])": the same losses, by name and by position.
    from trainkit import Trainer

    def two_outputs(**compiled: object) -> keras.Model:
        inputs = keras.Input((4,))
        model = keras.Model(inputs, {"a": keras.layers.Dense(1, name="a")(inputs), "b": keras.layers.Dense(3, activation="softmax", name="b")(inputs)})
        model.compile(optimizer="adam", **compiled)
        return model

    by_name = {"a": "mse", "b": "sparse_categorical_crossentropy"}
    by_position = ["mse", "sparse_categorical_crossentropy"]
    for compiled, given in ((by_name, by_position), (by_position, by_name)):
        trainer = Trainer(two_outputs(loss=compiled), loss=given, optimizer="adam", task=["regression", "multiclass"])
        assert [f for f in trainer.findings if f.code == "compile-ignored"] == []
    trainer = Trainer(two_outputs(loss={"a": "mae", "b": "sparse_categorical_crossentropy"}), loss=by_position, optimizer="adam", task=["regression", "multiclass"])
    (found,) = [f for f in trainer.findings if f.code == "compile-ignored"]
    assert "MeanAbsoluteError()" in found.evidence["loss_compiled"] and "MeanSquaredError()" in found.evidence["loss_used"]


def test_one_loss_for_every_output_and_that_loss_per_output_agree():
    # compile(loss="mse") on two outputs and Trainer(loss={"a": "mse", "b": "mse"}) (or the
    # other way round) were told "loss MeanSquaredError() (trainkit uses {...})": both read one
    # loss as that loss for every output.
    from trainkit import Trainer

    def two_outputs(**compiled: object) -> keras.Model:
        inputs = keras.Input((4,))
        model = keras.Model(inputs, {"a": keras.layers.Dense(1, name="a")(inputs), "b": keras.layers.Dense(1, name="b")(inputs)})
        model.compile(optimizer="adam", **compiled)
        return model

    for compiled, given in (("mse", {"a": "mse", "b": "mse"}), ("mse", ["mse", "mse"]), ({"a": "mse", "b": "mse"}, "mse")):
        trainer = Trainer(two_outputs(loss=compiled), loss=given, optimizer="adam", task="regression")
        assert [f for f in trainer.findings if f.code == "compile-ignored"] == []
    # One output left without a loss, or another loss on one: told.
    for compiled, given in (("mse", {"a": "mse"}), ("mse", ["mse", "mae"])):
        trainer = Trainer(two_outputs(loss=compiled), loss=given, optimizer="adam", task="regression")
        (found,) = [f for f in trainer.findings if f.code == "compile-ignored"]
        assert found.evidence["loss_compiled"] == "MeanSquaredError()"


def test_a_compiled_losss_own_settings_dropped_by_the_trainer_are_named():
    # compile(loss=CategoricalCrossentropy(label_smoothing=0.1)) then Trainer(loss="categorical_crossentropy")
    # trained without the smoothing, in silence: both read CategoricalCrossentropy(from_logits=False).
    from trainkit import Trainer

    def softmax_model(loss: object) -> keras.Model:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        model.compile(loss=loss, optimizer="adam")
        return model

    trainer = Trainer(softmax_model(keras.losses.CategoricalCrossentropy(label_smoothing=0.1)), loss="categorical_crossentropy", optimizer="adam", task="multiclass")
    (found,) = [f for f in trainer.findings if f.code == "compile-ignored"]
    assert found.evidence == {"loss_compiled": "CategoricalCrossentropy(from_logits=False, label_smoothing=0.1)",
                              "loss_used": "CategoricalCrossentropy(from_logits=False)"}
    # The same settings given to both, or a name and its class's defaults, agree.
    for compiled, given in ((keras.losses.CategoricalCrossentropy(label_smoothing=0.1), keras.losses.CategoricalCrossentropy(label_smoothing=0.1)),
                            (keras.losses.CategoricalCrossentropy(), "categorical_crossentropy")):
        assert [f for f in Trainer(softmax_model(compiled), loss=given, optimizer="adam", task="multiclass").findings if f.code == "compile-ignored"] == []
    regression = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    regression.compile(loss=keras.losses.Huber(delta=2.0), optimizer="adam")  # its get_config leaves delta out
    (found,) = [f for f in Trainer(regression, loss="huber", optimizer="adam", task="regression").findings if f.code == "compile-ignored"]
    assert found.evidence["loss_compiled"] == "Huber(delta=2.0)"


def test_a_metric_function_of_one_s_own_under_a_keras_name_is_not_keras_s():
    # compile(metrics=[accuracy]) with the user's own accuracy function beside the Trainer's
    # "accuracy" read as the same metric: no compile-ignored, and Keras's accuracy replaced it.
    from trainkit import Trainer

    def accuracy(y_true, y_pred):
        return keras.ops.cast(keras.ops.equal(y_true, keras.ops.round(y_pred)), "float32")

    def found(compiled: list, given: list) -> list:
        model = _sigmoid_model(loss="binary_crossentropy", optimizer="adam", metrics=compiled)
        return [f for f in Trainer(model, task="binary", loss="binary_crossentropy", optimizer="adam", metrics=given).findings
                if f.code == "compile-ignored"]

    (one,) = found([accuracy], ["accuracy"])
    assert one.evidence == {"metrics_compiled": "[accuracy (a function of your own)]", "metrics_used": "[accuracy]"}
    # The same function, or Keras's own function beside its name: nothing.
    assert found([accuracy], [accuracy]) == []
    assert found([keras.metrics.mean_squared_error], ["mse"]) == []
    assert found([keras.losses.binary_crossentropy], [keras.losses.binary_crossentropy]) == []


def test_a_compiled_run_eagerly_or_jit_compile_the_trainer_does_not_run_is_named(monkeypatch):
    # model.compile(run_eagerly=True) (to debug a model's call) or jit_compile=True, then
    # Trainer(model): trainkit compiled its steps, without XLA under "auto" on this CPU for 20 steps,
    # and said nothing (model.run_eagerly True, model.jit_compile True, the loop's jit_compile False).
    import tensorflow as tf

    from trainkit import Trainer

    given = {"loss": "binary_crossentropy", "optimizer": "adam", "task": "binary"}

    def machine(*kinds: str) -> None:  # the physical devices TensorFlow lists
        devices = [tf.config.PhysicalDevice(name=f"/physical_device:{kind}:0", device_type=kind) for kind in kinds]
        monkeypatch.setattr(tf.config, "list_physical_devices", lambda device_type=None: [d for d in devices if device_type in (None, d.device_type)])

    machine("CPU")

    def found(compiled: dict, **trainer: object) -> list:
        model = _sigmoid_model(loss="binary_crossentropy", optimizer="adam", **compiled)
        return [f for f in Trainer(model, **given, **trainer).findings if f.code == "compile-ignored"]

    (eager,) = found({"run_eagerly": True})
    assert eager.evidence == {"run_eagerly_compiled": "True",
                              "run_eagerly_used": "tf.function-compiled steps; tf.config.run_functions_eagerly(True) runs them eagerly"}
    assert "tf.config.run_functions_eagerly(True)" in eager.advice and "run_eagerly=..." not in eager.advice
    (jit,) = found({"jit_compile": True})
    assert jit.evidence["jit_compile_compiled"] == "True" and jit.evidence["jit_compile_used"].startswith("'auto'")
    assert "jit_compile=..." in jit.advice
    (jit_off,) = found({"jit_compile": True}, jit_compile=False)
    assert jit_off.evidence == {"jit_compile_compiled": "True", "jit_compile_used": "False"}
    # Taken, or not asked for: nothing.
    assert found({"jit_compile": True}, jit_compile=True) == []
    assert found({"jit_compile": False}) == found({}) == []
    # On a machine with a GPU, Keras's own "auto" compiles jit_compile=True: no choice to name.
    machine("CPU", "GPU")
    assert found({"jit_compile": True}, jit_compile=False) == []


def test_a_compiled_jit_compile_keras_itself_turned_off_is_not_named(monkeypatch):
    # compile(jit_compile=True) of a model with a layer XLA cannot compile (RandomZoom): Keras
    # proceeds with jit_compile=False ("Model doesn't support jit_compile=True"), model.fit trains
    # without XLA too, and the Trainer's 'auto' was told it ignored jit_compile=True.
    from trainkit import Trainer

    cpu = [tf.config.PhysicalDevice(name="/physical_device:CPU:0", device_type="CPU")]
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda device_type=None: [d for d in cpu if device_type in (None, d.device_type)])

    def found(*augment: keras.layers.Layer) -> list:
        model = keras.Sequential([keras.Input((8, 8, 1)), *augment, keras.layers.Flatten(), keras.layers.Dense(1)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.compile(loss="mse", optimizer="adam", jit_compile=True)
        return [f for f in Trainer(model, loss="mse", optimizer=model.optimizer, task="regression").findings if f.code == "compile-ignored"]

    assert found(keras.layers.RandomZoom(0.1)) == []
    (jit,) = found()  # the same compile of a model XLA can compile: told
    assert jit.evidence["jit_compile_compiled"] == "True"


@pytest.mark.parametrize(("kind", "name", "hint"), [
    ("loss", "keras.losses.BinaryCrossentropy", 'Did you mean "binary_crossentropy"?'),
    ("loss", "tf.keras.losses.Huber", 'Did you mean "Huber"?'),
    ("metric", "keras.metrics.AUC", 'Did you mean "AUC"?'),
])
def test_a_keras_loss_or_metric_by_its_module_path_is_not_called_ones_own(kind, name, hint):
    # 9a11d66 read any dotted name as a function of the user's own: "keras.losses.BinaryCrossentropy"
    # was told "one of your own is not imported by a path ... Train with it from Python:
    # Trainer(model, loss=BinaryCrossentropy, ...)", sending Keras's own loss off the recipe.
    from trainkit.errors import UnknownNameError
    from trainkit.resolve import get_metric

    with pytest.raises(UnknownNameError) as info:
        get_loss(name) if kind == "loss" else get_metric(name, "binary")
    assert info.value.code == f"unknown-{kind}"
    assert "named without their module path" in str(info.value) and hint in str(info.value)
    assert "your own" not in str(info.value) and "from Python" not in str(info.value)

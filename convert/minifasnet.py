"""MiniFASNetV2 / MiniFASNetV1SE rebuilt in Keras and loaded from the teachers' TFLite weights.

The architecture and the weights are Minivision's Silent-Face-Anti-Spoofing models
(``src/model_lib/MiniFASNet.py``), Apache License 2.0; the weights come from the TFLite
conversions in ``../shared/teachers/minifasnet`` (their ``LICENSE`` applies to anything trained
from them: say so in the model's metadata). This module is our own re-implementation; it is used
offline by ``convert/`` only (TensorFlow), never on the device.

What differs from the teacher, on purpose:
- Input: the device's ``rgb`` feature (RGB, x/255, 80x80x3). The teacher reads BGR 0..255; the
  channel reversal and the x255 are folded into the first convolution's kernel, so the graph has
  no extra op (``input_norm="bgr255"`` keeps the teacher's convention, for checks).
- Output: one live logit ([B, 1], the device's ``live_logit`` contract) from a Dense(1) on the
  128-d embedding. ``load_teacher_weights`` starts it as ``z1 - (z0 + z2) / 2`` of the teacher's
  3 logits (index 1 = live): needs no data, but the teacher's P(live) is
  ``sigmoid(z1 - logsumexp(z0, z2))``, which no linear function of the logits follows (on 214 real
  crops: rank correlation 0.978, P(live) off by 0.13 on average, 11-12% of decisions at 0.5
  flipped). ``fit_live_head`` refits the head on the embedding by ridge least squares to that
  exact log-odds on unlabelled crops (0.983-0.990, 0.02-0.05, 3-4%): use it before fine-tuning.
  ``outputs="both"`` also returns the teacher's 3 logits (checks, distillation targets).
- ``activation="relu"``: PReLU replaced by ReLU, same weights. An int8 PReLU graph falls into 34
  XNNPACK partitions; with ReLU (fused into the convolutions) the whole int8 graph, the V1SE's
  squeeze-and-excitation ops (MEAN, LOGISTIC, MUL) included, is one partition.
  ``distill_relu_from_prelu`` brings the ReLU student's ranking back towards the teacher's.
  Figures and the commands behind them: ``convert/minifasnet_bench.py``.

Batch norm is folded into the convolution biases in the teacher files, so the Keras model has none:
fine-tuning trains convolutions with biases, which is what the folded graph is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KINDS = ("v2", "v1se")
ACTIVATIONS = ("prelu", "relu", "prelu_dw")
TEACHER_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "teachers" / "minifasnet"
TEACHERS = {
    "v2": "2.7_80x80_MiniFASNetV2.tflite",
    "v1se": "4_0_0_80x80_MiniFASNetV1SE.tflite",
}
CROP_SCALE = {"v2": 2.7, "v1se": 4.0}
SIZE = 80
LIVE = 1  # index of the live class among the teacher's 3 logits
ATTACKS = (0, 2)

# Pruned widths of the residual blocks' expansions (Minivision's keep lists), per stage.
_STAGES = {
    "v2": {"conv_3": (13, 13, 13, 13), "conv_4": (231, 52, 26, 77, 26, 26), "conv_5": (26, 26)},
    "v1se": {"conv_3": (13, 26, 13, 52), "conv_4": (154, 52, 26, 52, 26, 26), "conv_5": (26, 26)},
}
# (expansion width, output width) of the stride-2 blocks before each residual stage
_DOWN = {"conv_23": (103, 64), "conv_34": (231, 128), "conv_45": (308, 128)}
_SE_REDUCTION = 4


@dataclass
class _Namer:
    """Weighted layers get a running number, so the loader walks them in the teacher's op order."""

    n: int = 0

    def __call__(self, label: str) -> str:
        self.n += 1
        return f"{self.n:03d}_{label}"


def build_minifasnet(kind: str, activation: str = "prelu", input_norm: str = "rgb01", batch_size: int | None = 1,
                     outputs: str = "live", dropout: float = 0.2, channels: int = 3, aux_branch: bool = False):
    """The MiniFASNet ``kind`` ("v2" or "v1se") as a Keras functional model, weights untrained.

    ``input_norm``: "rgb01" (the device's rgb feature) or "bgr255" (the teacher's input).
    ``batch_size``: 1 for export (XNNPACK, fixed shapes), None for training; both builds share
    layer names, so ``copy_weights`` moves weights between them.
    ``outputs``: "live" -> [B, 1] live logit; "both" -> [live logit, teacher's 3 logits].
    """
    import keras
    from keras import layers

    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: choose one of {KINDS}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r}: choose one of {ACTIVATIONS}")
    if input_norm not in ("rgb01", "bgr255"):
        raise ValueError(f"input_norm {input_norm!r}: choose rgb01 or bgr255")
    if outputs not in ("live", "both"):
        raise ValueError(f"outputs {outputs!r}: choose live or both")
    name = _Namer()

    def act(x, label):
        if activation == "prelu":
            return layers.PReLU(shared_axes=[1, 2], name=name(label + "_prelu"))(x)
        if activation == "prelu_dw":
            # PReLU(x) = a*x + relu((1-a)*x) for slopes a < 1 (every teacher slope is): two 1x1
            # depthwise convolutions, the second with a fused ReLU, and an add. Exactly the teacher
            # in float, and all three ops stay inside one int8 XNNPACK partition, which PRELU does not.
            neg = layers.DepthwiseConv2D(1, use_bias=False, name=name(label + "_prelu"))(x)
            pos = layers.DepthwiseConv2D(1, use_bias=False, activation="relu", name=f"{label}_prelu_pos")(x)
            return layers.Add(name=f"{label}_prelu_add")([neg, pos])
        return layers.ReLU(name=f"{label}_relu")(x)

    def conv(x, filters, label, kernel=1, stride=1, with_act=True):
        if stride == 2:  # PyTorch's symmetric padding 1; Keras "same" would pad bottom/right only
            x = layers.ZeroPadding2D(1, name=f"{label}_pad")(x)
        pad = "valid" if stride == 2 or kernel == 1 else "same"
        x = layers.Conv2D(filters, kernel, strides=stride, padding=pad, name=name(label))(x)
        return act(x, label) if with_act else x

    def dwconv(x, label, kernel=3, stride=1, padding="same", with_act=True):
        if stride == 2:
            x = layers.ZeroPadding2D(1, name=f"{label}_pad")(x)
            padding = "valid"
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, name=name(label))(x)
        return act(x, label) if with_act else x

    def depth_wise(x, mid, out, label, stride=1, residual=False, se=False):
        y = conv(x, mid, f"{label}_expand")
        y = dwconv(y, f"{label}_dw", stride=stride)
        y = conv(y, out, f"{label}_project", with_act=False)
        if se:
            y = squeeze_excite(y, label)
        return layers.Add(name=f"{label}_add")([x, y]) if residual else y

    def squeeze_excite(y, label):
        c = y.shape[-1]
        s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{label}_se_pool")(y)
        s = layers.Conv2D(c // _SE_REDUCTION, 1, activation="relu", name=name(f"{label}_se_fc1"))(s)
        s = layers.Conv2D(c, 1, name=name(f"{label}_se_fc2"))(s)
        s = layers.Activation("sigmoid", name=f"{label}_se_gate")(s)
        return layers.Multiply(name=f"{label}_se_mul")([y, s])

    # the input's name tells load_teacher_weights which convention to fold into conv1
    # channels beyond the first 3 (ELA, wavelet residual) enter the first convolution; their
    # weights start at zero (load_teacher_weights), so the model starts as the teacher
    inp = keras.Input((SIZE, SIZE, channels), batch_size=batch_size, name="rgb" if input_norm == "rgb01" else "bgr255")
    x = conv(inp, 32, "conv1", kernel=3, stride=2)
    x = dwconv(x, "conv2_dw")
    for down, stage in (("conv_23", "conv_3"), ("conv_34", "conv_4"), ("conv_45", "conv_5")):
        mid, out = _DOWN[down]
        x = depth_wise(x, mid, out, down, stride=2)
        if down == "conv_34" and channels > 3 and aux_branch:
            x = _aux_branch(inp, x, layers)
        mids = _STAGES[kind][stage]
        for i, m in enumerate(mids):
            se = kind == "v1se" and i == len(mids) - 1
            x = depth_wise(x, m, out, f"{stage}_{i}", residual=True, se=se)
    x = conv(x, 512, "conv_6_sep")
    x = dwconv(x, "conv_6_dw", kernel=5, padding="valid", with_act=False)
    x = layers.Flatten(name="flatten")(x)
    emb = layers.Dense(128, name=name("embedding"))(x)  # Linear + BatchNorm1d folded
    emb = layers.Dropout(dropout, name="dropout")(emb)
    live = layers.Dense(1, name="live_logit")(emb)
    outs = live
    if outputs == "both":
        outs = [live, layers.Dense(3, use_bias=False, name=name("teacher_logits"))(emb)]
    return keras.Model(inp, outs, name=f"minifasnet_{kind}_{activation}")


def _aux_branch(inp, x, layers):
    """A small CNN over every input channel (ELA, wavelet residual beside RGB) added to the 10x10 features.

    Its last 1x1 convolution starts at zero, so the model starts as the teacher; training decides
    what the forensic channels add. Ops: convolutions with fused ReLU and one add (one int8 partition).
    """
    a = inp
    for i, width in enumerate((16, 32, 48)):
        a = layers.ZeroPadding2D(1, name=f"aux_{i}_pad")(a)
        a = layers.Conv2D(width, 3, strides=2, activation="relu", name=f"aux_{i}")(a)
    a = layers.Conv2D(x.shape[-1], 1, kernel_initializer="zeros", name="aux_out")(a)
    return layers.Add(name="aux_add")([x, a])


def teacher_tensors(tflite_path: str | Path) -> list[tuple[str, list[np.ndarray]]]:
    """(op, [weights...]) of every weighted op of a teacher .tflite, in graph order."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(tflite_path),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    out = []
    for op in it._get_ops_details():
        kind = op["op_name"]
        if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "FULLY_CONNECTED"):
            continue
        # inputs[0] is the activation; the rest are constants (a missing bias is index -1)
        out.append((kind, [it.get_tensor(int(i)).copy() for i in op["inputs"][1:] if int(i) >= 0]))
    return out


def load_teacher_weights(model, tflite_path: str | Path) -> None:
    """Set every weight of a ``build_minifasnet`` model from the teacher .tflite, in op order.

    Raises ValueError naming the layer when the file and the model disagree (wrong kind).
    """
    from keras import layers

    ops = teacher_tensors(tflite_path)
    weighted = sorted((l for l in model.layers if l.name[:3].isdigit()), key=lambda l: l.name)
    relu = not any(l.name.endswith("_prelu") for l in weighted)
    if relu:
        ops = [o for o in ops if o[0] != "PRELU"]
    rgb01 = model.layers[0].name == "rgb"
    fc = [o for o in ops if o[0] == "FULLY_CONNECTED"]
    if len(fc) != 2:
        raise ValueError(f"{tflite_path}: expected 2 fully connected ops (embedding, classifier), found {len(fc)}")
    classifier = fc[1][1][0]  # (3, 128), no bias
    ops = ops[:-1]
    has_teacher_head = any(l.name.endswith("_teacher_logits") for l in weighted)
    if has_teacher_head:
        ops.append(fc[1])
    if len(ops) != len(weighted):
        raise ValueError(f"{tflite_path}: {len(ops)} weighted ops but {model.name} has {len(weighted)} weighted layers"
                         " (teacher file of another kind?)")
    for layer, (op, w) in zip(weighted, ops):
        want = [tuple(v.shape) for v in layer.get_weights()]
        if op == "CONV_2D":
            kernel, bias = w[0].transpose(1, 2, 3, 0), w[1]  # OHWI -> HWIO
            if layer.name.endswith("_conv1") and rgb01:
                kernel = kernel[:, :, ::-1, :] * np.float32(255.0)  # RGB x/255 in, BGR 0..255 seen
            if layer.name.endswith("_conv1") and want[0][2] > kernel.shape[2]:
                extra = np.zeros(kernel.shape[:2] + (want[0][2] - kernel.shape[2], kernel.shape[3]), np.float32)
                kernel = np.concatenate([kernel, extra], axis=2)
            new = [kernel, bias]
        elif op == "DEPTHWISE_CONV_2D":
            new = [w[0][0][..., None], w[1]]  # 1HWC -> HWC1
        elif op == "PRELU" and isinstance(layer, layers.DepthwiseConv2D):  # prelu_dw: slope a, then 1 - a
            a = w[0].reshape(-1).astype(np.float32)
            if a.max() >= 1:
                raise ValueError(f"{tflite_path}: a PReLU slope >= 1 in {layer.name}; prelu_dw needs slopes < 1")
            model.get_layer(layer.name[4:] + "_pos").set_weights([(1 - a).reshape(want[0])])
            new = [a.reshape(want[0])]
        elif op == "PRELU":
            new = [w[0].reshape(want[0])]
        else:  # FULLY_CONNECTED: (out, in) -> (in, out)
            new = [w[0].T] + ([w[1]] if len(w) > 1 else [])
        if [tuple(v.shape) for v in new] != want:
            raise ValueError(f"{tflite_path}: {op} weights {[v.shape for v in new]} do not fit layer "
                             f"{layer.name} {want} (teacher file of another kind?)")
        layer.set_weights(new)
    w_live = classifier[LIVE] - (classifier[ATTACKS[0]] + classifier[ATTACKS[1]]) / 2
    model.get_layer("live_logit").set_weights([w_live[:, None].astype(np.float32), np.zeros(1, np.float32)])


def copy_weights(src, dst) -> None:
    """Copy weights layer by layer, by name (e.g. a batch-None training model -> a batch-1 export)."""
    names = {l.name for l in dst.layers}
    for layer in src.layers:
        if layer.weights and layer.name in names:
            dst.get_layer(layer.name).set_weights(layer.get_weights())


def rgb_input(crops: np.ndarray) -> np.ndarray:
    """The device's rgb feature of uint8 RGB crops: float32 x/255, [N, 80, 80, 3]."""
    return crops.astype(np.float32) * np.float32(1 / 255)


def teacher_logits(tflite_path: str | Path, crops: np.ndarray) -> np.ndarray:
    """[N, 3] logits of the teacher .tflite itself on uint8 RGB crops (fed BGR 0..255, one at a time)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tflite_path), num_threads=1)
    it.allocate_tensors()
    i_idx, o_idx = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    out = []
    for crop in crops:
        it.set_tensor(i_idx, crop[None, :, :, ::-1].astype(np.float32))
        it.invoke()
        out.append(it.get_tensor(o_idx)[0].copy())
    return np.array(out, np.float32)


def live_log_odds(logits: np.ndarray) -> np.ndarray:
    """log(P(live) / (1 - P(live))) of the softmax over 3 logits: z1 - logsumexp(z0, z2)."""
    z = np.asarray(logits, np.float64)
    return z[:, LIVE] - np.logaddexp(z[:, ATTACKS[0]], z[:, ATTACKS[1]])


def teacher_model(kind: str, tflite_path: str | Path, batch_size: int | None = None):
    """The PReLU build with the teacher's weights, both outputs: the reference to distil from."""
    model = build_minifasnet(kind, "prelu", batch_size=batch_size, outputs="both")
    load_teacher_weights(model, tflite_path)
    return model


def distill_relu_from_prelu(kind: str, tflite_path: str | Path, crops: np.ndarray, epochs: int = 4,
                            batch_size: int = 32, learning_rate: float = 1e-4, augment: bool = False,
                            loss_kind: str = "mse", on_epoch=None, seed: int = 0):
    """A ReLU student, started from the teacher's weights, trained to give the teacher's logits.

    ``crops``: unlabelled uint8 RGB crops at the kind's scale ([N, 80, 80, 3]). Each batch is
    augmented (mirror, small shift and zoom, brightness and contrast) and the PReLU teacher scores
    the augmented batch itself, so every step sees new pairs: with fixed targets on a few thousand
    crops the student fitted them and stopped following the teacher on other crops.
    Targets: the teacher's 3 logits and its exact live log-odds ``z1 - logsumexp(z0, z2)`` (which
    the live head learns); loss: mean squared error on both (logit matching keeps the ranking in
    the tails, where KL on probabilities goes flat). ``on_epoch(epoch, student, seconds)`` is
    called after each epoch. Returns the student (batch None, outputs "both"); ``copy_weights``
    it into an export build.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    teacher = teacher_model(kind, tflite_path)
    student = build_minifasnet(kind, "relu", batch_size=None, outputs="both", dropout=0.0)
    load_teacher_weights(student, tflite_path)
    jitter = [keras.layers.RandomFlip("horizontal")]
    if augment:
        jitter += [keras.layers.RandomTranslation(0.05, 0.05, fill_mode="reflect"),
                   keras.layers.RandomZoom(0.1, fill_mode="reflect"),
                   keras.layers.RandomBrightness(0.1, value_range=(0.0, 1.0)),
                   keras.layers.RandomContrast(0.15)]
    jitter = keras.Sequential(jitter)
    steps_per_epoch = int(np.ceil(len(crops) / batch_size))
    # cosine decay to zero: a constant rate kept the student wandering around the teacher
    opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, epochs * steps_per_epoch))

    @tf.function
    def step(x):
        x = tf.clip_by_value(jitter(x, training=True), 0.0, 1.0)
        _, z_t = teacher(x, training=False)
        live_t = z_t[:, LIVE] - tf.reduce_logsumexp(tf.gather(z_t, ATTACKS, axis=1), axis=1)
        with tf.GradientTape() as tape:
            live_s, z_s = student(x, training=True)
            if loss_kind == "mse":
                loss = tf.reduce_mean((live_s[:, 0] - live_t) ** 2) + tf.reduce_mean((z_s - z_t) ** 2)
            else:  # cross-entropy against the teacher's probabilities, 3-way and live-vs-attack
                loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(tf.nn.softmax(z_t), z_s)) + tf.reduce_mean(
                    tf.nn.sigmoid_cross_entropy_with_logits(tf.sigmoid(live_t), live_s[:, 0]))
        grads = tape.gradient(loss, student.trainable_weights)
        opt.apply_gradients(zip(grads, student.trainable_weights))
        return loss

    x_all = rgb_input(crops)
    rng = np.random.default_rng(seed)
    t0 = time.process_time()
    for epoch in range(epochs):
        order = rng.permutation(len(x_all))
        for k in range(steps_per_epoch):
            step(tf.constant(x_all[order[k * batch_size:(k + 1) * batch_size]]))
        if on_epoch is not None:
            on_epoch(epoch + 1, student, time.process_time() - t0)
    return student


def freeze_until(model, stage: str) -> int:
    """Freeze every weighted layer up to the end of ``stage`` (e.g. "conv_3"); returns how many."""
    weighted = [l for l in model.layers if l.name[:3].isdigit()]
    last = max((int(l.name[:3]) for l in weighted if l.name[4:].startswith(stage + "_")), default=None)
    if last is None:
        raise ValueError(f"no layer of stage {stage!r} in {model.name}")
    frozen = [l for l in weighted if int(l.name[:3]) <= last]
    for layer in frozen:
        layer.trainable = False
    return len(frozen)


def fit_live_head(model, crops: np.ndarray, ridge: float = 1e-2) -> float:
    """Refit the Dense(1) live head so it gives the teacher's exact live log-odds on real crops.

    ``model``: an ``outputs="both"`` build whose teacher_logits are the reference (the loaded
    teacher, or a student). Ridge least squares from the 128-d embedding (mirrored crops too) to
    ``z1 - logsumexp(z0, z2)``; returns the RMS residual. The initial head is linear in the 3
    logits; the embedding's 128 dimensions can follow the softmax's bend where those cannot.
    """
    import keras

    x = rgb_input(np.concatenate([crops, crops[:, :, ::-1]]))
    probe = keras.Model(model.input, [model.get_layer("dropout").output, model.output[1]])
    emb, logits = probe.predict(x, batch_size=128, verbose=0)
    target = live_log_odds(logits)
    a = np.concatenate([emb.astype(np.float64), np.ones((len(emb), 1))], axis=1)
    reg = ridge * len(a) * np.eye(a.shape[1])
    reg[-1, -1] = 0.0  # the bias is not shrunk
    w = np.linalg.solve(a.T @ a + reg, a.T @ target)
    model.get_layer("live_logit").set_weights([w[:-1, None].astype(np.float32), w[-1:].astype(np.float32)])
    return float(np.sqrt(np.mean((a @ w - target) ** 2)))

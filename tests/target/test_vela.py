"""The Ethos-U profiles against the real compiler, Arm Vela.

Every form of every operator rule of `arm-ethos-u55` and `arm-ethos-u85` has
small ONNX models here: one obeying it and one that breaks it because of that
form (CASES; the exemptions, with their reasons, are in EXEMPT and
NO_BREAKING_CASE). Each model is a
1x1 Conv (so the operator under test reads a quantized feature map, as in a
real network) followed by the operator (a Transpose of another rank between
two Reshapes).

Two tiers:

- test_profile_predicts_recorded_vela (default suite, no Vela needed):
  `check-target`'s verdict on every case equals what Vela 5.2.0 did with it,
  recorded in VELA_5_2 below (onnx2tf 2.6.9 full-integer int8, flatbuffer_direct
  backend; Vela `--accelerator-config ethos-u55-128` / `ethos-u85-256`).
- test_vela_places_as_the_profile_predicts (needs `onnx2tf` and `vela`, as
  installed by benchmarks/requirements-ethos-u.txt; skipped otherwise): each
  case converted with onnx2tf -oiqt and compiled with Vela; the model is all
  on the NPU exactly when the profile says it fits, and Vela's placement is
  the recorded one. Run it with the toolchain's interpreter:

      /work/venv-vela/bin/python -m pytest -q tests/target/test_vela.py
"""
from __future__ import annotations


import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convrewrite.target import check_model, load_profile

U55, U85 = "ethos-u55-128", "ethos-u85-256"
PROFILES = {U55: "arm-ethos-u55", U85: "arm-ethos-u85"}
F = TensorProto.FLOAT


# --- model building -------------------------------------------------------------------

def _w(name, shape, seed=0):
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)


def _ints(name, values):
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


def _floats(name, values):
    return numpy_helper.from_array(np.asarray(values, np.float32), name)


def after_conv(nodes, inits=(), c=8, h=8, w=8, out=None, opset=17):
    """x[1,c,h,w] -> 1x1 Conv -> t -> nodes (reading 't', writing 'y')."""
    pre = helper.make_node("Conv", ["x", "w0"], ["t"], name="pre")
    g = helper.make_graph([pre] + list(nodes), "case", [helper.make_tensor_value_info("x", F, [1, c, h, w])],
                          [helper.make_tensor_value_info("y", F, out)], [_w("w0", (c, c, 1, 1))] + list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return onnx.shape_inference.infer_shapes(m)


def conv(k, s=1, d=1, p=None, group=1, c=8, h=16, cout=8):
    pads = p if p is not None else [((k - 1) * d) // 2] * 4
    n = helper.make_node("Conv", ["t", "wc"], ["y"], kernel_shape=[k, k], strides=[s, s], dilations=[d, d],
                         pads=pads, group=group)
    return after_conv([n], [_w("wc", (cout, c // group, k, k), 1)], c=c, h=h, w=h)


def convt(k, s, p=0, group=1, out_pad=0, c=8, h=8):
    n = helper.make_node("ConvTranspose", ["t", "wc"], ["y"], kernel_shape=[k, k], strides=[s, s],
                         pads=[p] * 4, group=group, output_padding=[out_pad, out_pad])
    return after_conv([n], [_w("wc", (c, 8 // group if group > 1 else 8, k, k), 1)], c=c, h=h, w=h)


def resize(mode, ctm, factor=None, size=None, nearest="floor", h=8, opset=17):
    out = size if size is not None else h * factor
    n = helper.make_node("Resize", ["t", "", "", "sizes"], ["y"], mode=mode, coordinate_transformation_mode=ctm,
                         nearest_mode=nearest)
    return after_conv([n], [_ints("sizes", [1, 8, out, out])], h=h, w=h, opset=opset)


def layer_norm(channels_last=True, h=8):
    """LayerNormalization over the last axis after a 1x1 Conv: of the NHWC
    Transpose (a channels-last LayerNorm, transposed back), or of the NCHW map (W)."""
    n = 8 if channels_last else h
    inits = [numpy_helper.from_array(np.ones(n, np.float32), "ln_s"), numpy_helper.from_array(np.zeros(n, np.float32), "ln_b")]
    if not channels_last:
        return after_conv([helper.make_node("LayerNormalization", ["t", "ln_s", "ln_b"], ["y"], axis=-1)], inits, h=h, w=h)
    nodes = [helper.make_node("Transpose", ["t"], ["u"], perm=[0, 2, 3, 1]),
             helper.make_node("LayerNormalization", ["u", "ln_s", "ln_b"], ["v"], axis=-1),
             helper.make_node("Transpose", ["v"], ["y"], perm=[0, 3, 1, 2])]
    return after_conv(nodes, inits, h=h, w=h)


def single(op, inits=(), c=8, h=8, **attrs):
    names = ["t"] + [i.name for i in inits]
    return after_conv([helper.make_node(op, names, ["y"], **attrs)], inits, c=c, h=h, w=h)


def pad(pads, mode="constant", opset=17):
    n = helper.make_node("Pad", ["t", "pads"], ["y"], mode=mode)
    return after_conv([n], [_ints("pads", pads)], opset=opset)


def slice_(starts, ends, axes, steps):
    return single("Slice", [_ints("starts", starts), _ints("ends", ends), _ints("axes", axes), _ints("steps", steps)])


def shuffle_reshape(rank6=True):
    """The Reshape -> Transpose -> Reshape pixel shuffle (DCR, block 2) at rank 6."""
    nodes = [helper.make_node("Reshape", ["t", "s1"], ["a"]),
             helper.make_node("Transpose", ["a"], ["b"], perm=[0, 3, 4, 1, 5, 2]),
             helper.make_node("Reshape", ["b", "s2"], ["y"])]
    return after_conv(nodes, [_ints("s1", [1, 2, 2, 2, 8, 8]), _ints("s2", [1, 2, 16, 16])])


def reshaped_transpose(shape, perm, back, h=128, w=128):
    """The 1x1 Conv's [1,8,h,w] output reshaped to `shape`, transposed by `perm`,
    and reshaped to `back`: a Transpose of any rank and size."""
    nodes = [helper.make_node("Reshape", ["t", "s1"], ["a"]),
             helper.make_node("Transpose", ["a"], ["b"], perm=perm),
             helper.make_node("Reshape", ["b", "s2"], ["y"])]
    return after_conv(nodes, [_ints("s1", shape), _ints("s2", back)], h=h, w=w)


def _fc_model():
    """x[1,8,1,1] -> 1x1 Conv -> Reshape [1,8] -> MatMul [8,16]: a 2-D MatMul."""
    nodes = [helper.make_node("Reshape", ["t", "s"], ["r"]), helper.make_node("MatMul", ["r", "m"], ["y"])]
    return after_conv(nodes, [_ints("s", [1, 8]), _w("m", (8, 16), 2)], h=1, w=1)


def pointwise_resize():
    """The align_corners x2 Resize (resize_linear_ac_int, CPU on both NPUs) in the
    resize pass's pointwise form: Transpose + 1x1 Conv per axis, Transpose back."""
    from convrewrite import optimize

    model, _ = optimize(resize("linear", "align_corners", 2), passes=["resize"],
                        options={"resize_mode": "pointwise"}, verify=False)
    return model


def gather_matrix(axis):
    """The feature map as an [8, 64] matrix, its rows (axis 0, TFLite GATHER's
    batch_dims) or columns (axis 1) permuted by a Gather, and reshaped back."""
    order = np.arange(8 if axis == 0 else 64).reshape(-1, 2)[:, ::-1].ravel()   # swap neighbours
    nodes = [helper.make_node("Reshape", ["t", "s1"], ["a"]),
             helper.make_node("Gather", ["a", "i"], ["b"], axis=axis),
             helper.make_node("Reshape", ["b", "s2"], ["y"])]
    return after_conv(nodes, [_ints("s1", [8, 64]), _ints("i", order), _ints("s2", [1, 8, 8, 8])])


def resize_width(out_w, ctm="asymmetric", nearest="floor"):
    """A 1x2 feature map resized to 1 x out_w: a large factor on W alone."""
    n = helper.make_node("Resize", ["t", "", "", "sizes"], ["y"], mode="nearest",
                         coordinate_transformation_mode=ctm, nearest_mode=nearest)
    return after_conv([n], [_ints("sizes", [1, 8, 1, out_w])], h=1, w=2)


def resize_1d(mode, ctm, factor, w=32):
    """A 1-D Resize of the 1-D 1x1 Conv's output, x [1, 8, w] -> [1, 8, w * factor]
    (onnx2tf: RESHAPE, RESIZE_*, RESHAPE; docs/ethos_u.md *1-D Resize*)."""
    n = helper.make_node("Resize", ["t", "", "", "sizes"], ["y"], mode=mode, coordinate_transformation_mode=ctm,
                         nearest_mode="floor")
    return after_conv1d([n], [_ints("sizes", [1, 8, w * factor])], w=w)


def after_conv1d(nodes, inits=(), c=8, w=32):
    """x[1,c,w] -> 1-D 1x1 Conv -> t -> nodes (reading 't', writing 'y'): a map of one
    spatial axis, whose Convs onnx2tf runs as CONV_2D between two RESHAPEs."""
    pre = helper.make_node("Conv", ["x", "w0"], ["t"], name="pre", kernel_shape=[1])
    g = helper.make_graph([pre] + list(nodes), "case", [helper.make_tensor_value_info("x", F, [1, c, w])],
                          [helper.make_tensor_value_info("y", F, None)], [_w("w0", (c, c, 1))] + list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return onnx.shape_inference.infer_shapes(m)


def concat_1d_conv():
    """A 1-D Conv's output u and a 1x1 Conv of it with 4x the weights (a wider range)
    concatenated: the CONCATENATION's scale, forced onto u, is not the RESHAPE's."""
    nodes = [helper.make_node("Conv", ["t", "wd"], ["u"], kernel_shape=[3], pads=[1, 1]),
             helper.make_node("Conv", ["u", "wv"], ["v"], kernel_shape=[1]),
             helper.make_node("Concat", ["u", "v"], ["y"], axis=1)]
    wv = numpy_helper.from_array(numpy_helper.to_array(_w("wv", (4, 8, 1), 2)) * 4, "wv")
    return after_conv1d(nodes, [_w("wd", (8, 8, 3), 1), wv])


def slice_after_reshape(one_d=True):
    """The first sample of a map that a RESHAPE writes (a 1-D Conv's output, or
    the rank-6 pixel shuffle's), then a Relu (a graph output's Slice would write
    a tensor the quantizer does not calibrate): the SLICE's scale, of one
    sample's range, is forced onto the RESHAPE's output."""
    if one_d:
        nodes = [helper.make_node("Slice", ["t", "st", "en", "ax"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
        return after_conv1d(nodes, [_ints("st", [0]), _ints("en", [1]), _ints("ax", [2])])
    nodes = [helper.make_node("Reshape", ["t", "s1"], ["a"]),
             helper.make_node("Transpose", ["a"], ["b"], perm=[0, 3, 4, 1, 5, 2]),
             helper.make_node("Reshape", ["b", "s2"], ["u"]),
             helper.make_node("Slice", ["u", "st", "en", "ax"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    return after_conv(nodes, [_ints("s1", [1, 2, 2, 2, 8, 8]), _ints("s2", [1, 2, 16, 16]),
                              _ints("st", [0, 0]), _ints("en", [1, 1]), _ints("ax", [2, 3])])


def shuffle_1d_crop(bias_first=True):
    """The single-conv lowering of a 1-D stride-4 ConvTranspose (kernel 8, pads 2)
    as the convtranspose pass builds it for the Ethos-U: a 1-D Conv of 4x the
    channels, the CRD pixel shuffle as Reshape/Transpose/Reshape, the bias Add
    and the crop Slice, then a LeakyRelu (melgan's upsampler).  With
    `bias_first` the Add sits between the shuffle and the crop ("bias before
    the crop"): the SLICE reads the ADD's output, which takes the forced scale
    itself; without, the crop reads the shuffle's RESHAPE ("bias after the
    shuffle": its Add follows the crop).  The crop keeps 8 of the 136 samples,
    so that its range surely differs from the shuffle's (the full model's crop
    of 2 and 6 samples compiled in both orders: the scales agreed on the
    calibration data, which the profile cannot know)."""
    shuffle = [helper.make_node("Conv", ["t", "wk"], ["c"], kernel_shape=[3], pads=[1, 1]),
               helper.make_node("Reshape", ["c", "s1"], ["a"]),
               helper.make_node("Transpose", ["a"], ["b"], perm=[0, 1, 3, 2]),
               helper.make_node("Reshape", ["b", "s2"], ["u"])]
    add = lambda x, y: helper.make_node("Add", ["bias", x], [y])
    crop = lambda x, y: helper.make_node("Slice", [x, "st", "en", "ax"], [y])
    tail = [add("u", "v"), crop("v", "s")] if bias_first else [crop("u", "v"), add("v", "s")]
    inits = [_w("wk", (32, 8, 3), 1), _ints("s1", [1, 8, 4, 34]), _ints("s2", [1, 8, 136]),
             _floats("bias", np.linspace(-0.5, 0.5, 8, dtype=np.float32).reshape(1, 8, 1)),
             _ints("st", [2]), _ints("en", [10]), _ints("ax", [2])]
    return after_conv1d(shuffle + tail + [helper.make_node("LeakyRelu", ["s"], ["y"], alpha=0.2)], inits, w=34)


def matmul_var():
    """Both operands computed: t @ transpose(t) over the last two axes (rank 4)."""
    nodes = [helper.make_node("Transpose", ["t"], ["tt"], perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["t", "tt"], ["y"])]
    return after_conv(nodes)


# Each case: (name, the rule it exercises, builder).
CASES = {
    "conv_s1": ("Conv", lambda: conv(3)),
    "conv_s3_pad": ("Conv", lambda: conv(3, s=3, p=[1, 1, 0, 0])),
    "conv_s4_valid": ("Conv stride > 3 VALID", lambda: conv(4, s=4, p=[0, 0, 0, 0])),
    "conv_s4_pad": ("Conv stride > 3 padded", lambda: conv(3, s=4, p=[1, 1, 1, 1])),
    "conv_dilated2": ("Conv dilated", lambda: conv(3, d=2)),
    "conv_grouped": ("Conv grouped", lambda: conv(3, group=2)),
    "conv_grouped_s4_pad": ("Conv grouped stride > 3 padded", lambda: conv(3, s=4, p=[1, 1, 1, 1], group=2)),
    "dwconv_s3": ("Conv depthwise stride 3", lambda: conv(3, s=3, p=[1, 1, 0, 0], group=8)),
    "dwconv_s4": ("Conv depthwise stride 4", lambda: conv(4, s=4, p=[0, 0, 0, 0], group=8)),
    "convt_s2_same": ("ConvTranspose stride 2 SAME", lambda: convt(4, 2, p=1)),
    "convt_s2_full": ("ConvTranspose stride 2 VALID", lambda: convt(3, 2, p=0)),
    "convt_s2_outpad": ("ConvTranspose stride 2 output_padding", lambda: convt(3, 2, p=1, out_pad=1)),
    "convt_s1": ("ConvTranspose stride 1", lambda: convt(3, 1, p=1)),
    "convt_s1_dw": ("ConvTranspose depthwise stride 1", lambda: convt(3, 1, p=1, group=8)),
    "convt_s2_dw": ("ConvTranspose depthwise stride 2", lambda: convt(4, 2, p=1, group=8)),
    "convt_s4": ("ConvTranspose stride 4", lambda: convt(4, 4, p=0)),
    "convt_s2_crop": ("ConvTranspose stride 2, other output size", lambda: convt(4, 2, p=2)),
    # Vela's TRANSPOSE_CONV output size (VALID: n*s + max(k-s, 0)) on what onnx2tf writes: the
    # uncropped (n-1)*s+k, plus output_padding when every pad is 0 (output_size onnx2tf_valid)
    "convt_k1_s2": ("ConvTranspose kernel 1 < stride 2", lambda: convt(1, 2)),
    "convt_k1_s2_outpad": ("ConvTranspose kernel 1 < stride 2, output_padding 1 unpadded",
                           lambda: convt(1, 2, out_pad=1)),
    "convt_s2_outpad_unpadded": ("ConvTranspose stride 2, output_padding 1 unpadded", lambda: convt(3, 2, out_pad=1)),
    "convt_s3_outpad_cropped": ("ConvTranspose stride 3, output_padding 2 with pads", lambda: convt(5, 3, p=1, out_pad=2)),
    "resize_nearest_x2": ("Resize nearest asymmetric x2", lambda: resize("nearest", "asymmetric", 2)),
    "resize_nearest_x3": ("Resize nearest x3", lambda: resize("nearest", "asymmetric", 3)),
    "resize_nearest_x16": ("Resize nearest x16", lambda: resize("nearest", "asymmetric", 16, h=4)),
    "resize_nearest_x17": ("Resize nearest x17", lambda: resize("nearest", "asymmetric", 17, h=2)),
    "resize_nearest_8_to_12": ("Resize nearest x1.5", lambda: resize("nearest", "asymmetric", size=12)),
    "resize_nearest_16_to_8": ("Resize nearest x0.5", lambda: resize("nearest", "asymmetric", size=8, h=16)),
    "resize_nearest_w_x1024": ("Resize nearest x1024 on W", lambda: resize_width(2048)),
    "resize_nearest_w_x1025": ("Resize nearest x1025 on W", lambda: resize_width(2050)),
    "resize_nearest_hp_x2": ("Resize nearest half-pixel x2",
                             lambda: resize("nearest", "half_pixel", 2, nearest="round_prefer_ceil")),
    "resize_nearest_hp_x3": ("Resize nearest half-pixel x3",
                             lambda: resize("nearest", "half_pixel", 3, nearest="round_prefer_ceil")),
    # nearest_mode: onnx2tf writes RESIZE_NEAREST_NEIGHBOR whatever it is (ONNX2TF_INEXACT below;
    # every combination: test_vela_nearest.py)
    "resize_nearest_rpf_x2": ("Resize nearest asymmetric round_prefer_floor x2",
                              lambda: resize("nearest", "asymmetric", 2, nearest="round_prefer_floor")),
    "resize_nearest_rpf_x4": ("Resize nearest asymmetric round_prefer_floor x4",
                              lambda: resize("nearest", "asymmetric", 4, nearest="round_prefer_floor")),
    "resize_nearest_hp_floor_x2": ("Resize nearest half-pixel floor x2",
                                   lambda: resize("nearest", "half_pixel", 2, nearest="floor")),
    "resize_nearest_hp_rpf_8_to_12": ("Resize nearest half-pixel round_prefer_floor x1.5",
                                      lambda: resize("nearest", "half_pixel", size=12, nearest="round_prefer_floor")),
    "resize_nearest_hp_w_x1025": ("Resize nearest half-pixel x1025 on W",
                                  lambda: resize_width(2050, "half_pixel", "round_prefer_ceil")),
    "resize_nearest_hps_x2": ("Resize nearest half_pixel_symmetric x2",
                              lambda: resize("nearest", "half_pixel_symmetric", 2, nearest="round_prefer_ceil", opset=19)),
    "resize_nearest_tfnn_floor_x2": ("Resize nearest tf_half_pixel_for_nn floor x2",
                                     lambda: resize("nearest", "tf_half_pixel_for_nn", 2, nearest="floor")),
    "resize_nearest_tfnn_floor_x3": ("Resize nearest tf_half_pixel_for_nn floor x3",
                                     lambda: resize("nearest", "tf_half_pixel_for_nn", 3, nearest="floor")),
    "resize_nearest_tfnn_x2": ("Resize nearest tf_half_pixel_for_nn round_prefer_ceil x2",
                               lambda: resize("nearest", "tf_half_pixel_for_nn", 2, nearest="round_prefer_ceil")),
    "resize_nearest_ac_x2": ("Resize nearest align_corners (out-1)=2(in-1)",
                             lambda: resize("nearest", "align_corners", size=9, nearest="round_prefer_ceil", h=5)),
    "resize_nearest_ac_ceil_x2": ("Resize nearest align_corners ceil (out-1)=2(in-1)",
                                  lambda: resize("nearest", "align_corners", size=9, nearest="ceil", h=5)),
    "resize_nearest_ac_ceil_x4": ("Resize nearest align_corners ceil (out-1)=4(in-1)",
                                  lambda: resize("nearest", "align_corners", size=17, nearest="ceil", h=5)),
    "resize_nearest_ac_int": ("Resize nearest align_corners x2 (8 -> 16)",
                              lambda: resize("nearest", "align_corners", 2, nearest="round_prefer_ceil")),
    "resize_linear_hp_x2": ("Resize linear half-pixel x2", lambda: resize("linear", "half_pixel", 2)),
    "resize_linear_hp_x4": ("Resize linear half-pixel x4", lambda: resize("linear", "half_pixel", 4)),
    "resize_linear_asym_x4": ("Resize linear asymmetric x4", lambda: resize("linear", "asymmetric", 4)),
    "resize_linear_asym_x3": ("Resize linear asymmetric x3", lambda: resize("linear", "asymmetric", 3)),
    "resize_1d_nearest_x2": ("1-D Resize nearest asymmetric floor x2", lambda: resize_1d("nearest", "asymmetric", 2)),
    "resize_1d_nearest_x3": ("1-D Resize nearest asymmetric floor x3", lambda: resize_1d("nearest", "asymmetric", 3)),
    "resize_1d_linear_hp_x2": ("1-D Resize linear half-pixel x2", lambda: resize_1d("linear", "half_pixel", 2)),
    "resize_1d_linear_asym_x3": ("1-D Resize linear asymmetric x3", lambda: resize_1d("linear", "asymmetric", 3)),
    "resize_linear_ac_x2": ("Resize linear align_corners (out-1)=2(in-1)",
                            lambda: resize("linear", "align_corners", size=15)),
    "resize_linear_ac_int": ("Resize linear align_corners x2", lambda: resize("linear", "align_corners", 2)),
    "resize_linear_unit": ("Resize linear from 1x1", lambda: resize("linear", "half_pixel", size=8, h=1)),
    "resize_linear_hp_x1": ("Resize linear half-pixel x1 (identity)", lambda: resize("linear", "half_pixel", 1)),
    "layer_norm_channels": ("LayerNormalization over channels (NHWC Transpose), 8x8x8", layer_norm),
    "layer_norm_channels_h1": ("LayerNormalization over channels, 1x8x8", lambda: layer_norm(h=1)),
    "layer_norm_w": ("LayerNormalization over W of the NCHW map", lambda: layer_norm(channels_last=False)),
    "resize_linear_asym_x1": ("Resize linear asymmetric x1 (identity)", lambda: resize("linear", "asymmetric", 1)),
    "resize_linear_ac_x1": ("Resize linear align_corners x1 (identity)", lambda: resize("linear", "align_corners", 1)),
    "resize_ac_pointwise": ("Transpose + 1x1 Conv per axis (the resize pass's pointwise form)", pointwise_resize),
    "depth_to_space_dcr": ("DepthToSpace DCR", lambda: single("DepthToSpace", blocksize=2, mode="DCR")),
    "depth_to_space_crd": ("DepthToSpace CRD", lambda: single("DepthToSpace", blocksize=2, mode="CRD")),
    "space_to_depth": ("SpaceToDepth", lambda: single("SpaceToDepth", blocksize=2)),
    "transpose_nhwc": ("Transpose rank 4", lambda: single("Transpose", perm=[0, 2, 3, 1])),
    "transpose_hw": ("Transpose rank 4 H<->W", lambda: single("Transpose", perm=[0, 1, 3, 2])),
    "shuffle_rank6": ("Reshape/Transpose rank 6", lambda: shuffle_reshape()),
    # Transpose sizes (U55: 2^16 per axis for a permutation of the last three axes of an
    # otherwise 1-sized tensor, else 2^16 for the product of any rank-2 axes)
    "transpose_hw_wide": ("Transpose rank 4 H<->W, 256x512", lambda: after_conv(
        [helper.make_node("Transpose", ["t"], ["y"], perm=[0, 1, 3, 2])], c=2, h=256, w=512)),
    "transpose_long_axis": ("Transpose rank 4, an axis above 2^16", lambda: reshaped_transpose(
        [1, 1, 2, 66560], [0, 1, 3, 2], [1, 1, 2, 66560], w=130)),
    "transpose_moves_axis0": ("Transpose rank 4, moving axis 0", lambda: reshaped_transpose(
        [1, 1, 256, 512], [1, 0, 3, 2], [1, 8, 128, 128])),
    "transpose_rank5_unit_lead": ("Transpose rank 5, leading axes 1", lambda: reshaped_transpose(
        [1, 1, 2, 256, 256], [0, 1, 2, 4, 3], [1, 8, 128, 128])),
    "transpose_rank6_at_bound": ("Transpose rank 6 shuffle, 4 largest axes 2^16", lambda: reshaped_transpose(
        [1, 2, 2, 2, 128, 128], [0, 3, 4, 1, 5, 2], [1, 2, 256, 256])),
    "transpose_rank6_over_bound": ("Transpose rank 6 shuffle, 4 largest axes above 2^16", lambda: reshaped_transpose(
        [1, 2, 2, 2, 128, 130], [0, 3, 4, 1, 5, 2], [1, 2, 256, 260], w=130)),
    "pad_spatial": ("Pad constant H/W", lambda: pad([0, 0, 1, 2, 0, 0, 1, 2])),
    "pad_channel": ("Pad constant channel", lambda: pad([0, 1, 0, 0, 0, 1, 0, 0])),
    "pad_reflect": ("Pad reflect", lambda: pad([0, 0, 1, 1, 0, 0, 1, 1], "reflect")),
    "pad_edge": ("Pad edge", lambda: pad([0, 0, 1, 1, 0, 0, 1, 1], "edge")),
    "slice_step1": ("Slice step 1", lambda: slice_([1, 2], [7, 8], [2, 3], [1, 1])),
    "slice_step2_hw": ("Slice step 2 on H/W", lambda: slice_([0, 1], [8, 8], [2, 3], [2, 2])),
    "slice_step2_c": ("Slice step 2 on channels", lambda: slice_([0], [8], [1], [2])),
    "concat": ("Concat", lambda: after_conv([helper.make_node("Concat", ["t", "t"], ["y"], axis=1)])),
    # onnx2tf's int8 quantizer forces a Concat's / Slice's calibrated scale onto a tensor a RESHAPE
    # writes: Vela stops, "RESHAPE ... Does not have valid TFLite Semantics" (no_reshaped_inputs)
    "concat_1d_conv": ("Concat of a 1-D Conv's output", concat_1d_conv),
    "slice_1d_conv": ("Slice of a 1-D Conv's output", slice_after_reshape),
    "slice_rank6_shuffle": ("Slice of the rank-6 pixel shuffle's output", lambda: slice_after_reshape(one_d=False)),
    # an Add between (a lowered ConvTranspose's bias before its crop) requantizes: it takes the scale
    "shuffle_1d_bias_crop": ("Slice of a bias Add of the 1-D pixel shuffle's output", shuffle_1d_crop),
    "shuffle_1d_crop_bias": ("Slice of the 1-D pixel shuffle's output, bias Add after",
                             lambda: shuffle_1d_crop(bias_first=False)),
    "matmul_2d": ("MatMul rank 2", lambda: _fc_model()),
    "matmul_4d_const": ("MatMul rank 4, constant", lambda: after_conv(
        [helper.make_node("MatMul", ["t", "m"], ["y"])], [_w("m", (8, 8), 2)])),
    "matmul_4d_var": ("MatMul rank 4, both computed", matmul_var),
    "gather_c": ("Gather on channels", lambda: single("Gather", [_ints("i", [1, 0, 3, 2, 5, 4, 7, 6])], axis=1)),
    "gather_rows": ("Gather on axis 0 of a matrix", lambda: gather_matrix(0)),
    "gather_cols": ("Gather on axis 1 of a matrix", lambda: gather_matrix(1)),
    "gather_batch": ("Gather on the batch axis", lambda: single("Gather", [_ints("i", [0])], axis=0)),
    "tile": ("Tile", lambda: single("Tile", [_ints("r", [1, 1, 2, 2])])),
}


# Vela 5.2.0 with onnx2tf 2.6.9 (flatbuffer_direct, -oiqt): True = every operator on
# the NPU, False = at least one CPU operator. Filled from the tier below.
VELA_5_2 = {
    "conv_s1": {U55: True, U85: True},
    "conv_s3_pad": {U55: True, U85: True},
    "conv_s4_valid": {U55: True, U85: True},
    "conv_s4_pad": {U55: False, U85: True},    # U55: Vela stops, "Non-passthrough operation (Conv2D) could not run on NPU"
    "conv_dilated2": {U55: True, U85: True},
    "conv_grouped": {U55: True, U85: True},
    "conv_grouped_s4_pad": {U55: False, U85: True},  # U55: Vela stops, as for conv_s4_pad
    "dwconv_s3": {U55: True, U85: True},       # tf_converter (flatbuffer_direct: invalid per-channel quantization)
    "dwconv_s4": {U55: False, U85: True},      # tf_converter
    "convt_s2_same": {U55: True, U85: True},
    "convt_s2_full": {U55: True, U85: True},
    "convt_s2_outpad": {U55: True, U85: True},
    "convt_s1": {U55: True, U85: True},
    "convt_s1_dw": {U55: True, U85: True},
    "convt_s2_dw": {U55: True, U85: True},
    "convt_s4": {U55: False, U85: True},
    "convt_s2_crop": {U55: True, U85: True},
    "convt_k1_s2": {U55: False, U85: False},          # "(Padding::VALID) Unsupported IFM/OFM shapes. ifm:(8,8) ofm:(15,15)"
    "convt_k1_s2_outpad": {U55: True, U85: True},     # ofm 16 = 8*2 + max(1-2, 0)
    "convt_s2_outpad_unpadded": {U55: False, U85: False},  # "... ifm:(8,8) ofm:(18,18), stride:(2,2), kernel:(3,3)"
    "convt_s3_outpad_cropped": {U55: False, U85: True},    # U55: "stride out of range: (3,3)"
    "resize_nearest_x2": {U55: True, U85: True},
    "resize_nearest_x3": {U55: False, U85: True},
    "resize_nearest_x16": {U55: False, U85: True},
    "resize_nearest_x17": {U55: False, U85: True},
    "resize_nearest_8_to_12": {U55: False, U85: True},
    "resize_nearest_16_to_8": {U55: False, U85: True},
    "resize_nearest_w_x1024": {U55: False, U85: True},
    "resize_nearest_w_x1025": {U55: False, U85: False},
    "resize_nearest_hp_x2": {U55: True, U85: True},
    "resize_nearest_hp_x3": {U55: False, U85: True},
    "resize_nearest_rpf_x2": {U55: True, U85: True},
    "resize_nearest_rpf_x4": {U55: True, U85: True},
    "resize_nearest_hp_floor_x2": {U55: True, U85: True},
    "resize_nearest_hp_rpf_8_to_12": {U55: False, U85: True},
    "resize_nearest_hp_w_x1025": {U55: False, U85: False},
    "resize_nearest_hps_x2": {U55: True, U85: True},          # tf_converter (flatbuffer_direct: custom ONNX_RESIZE)
    "resize_nearest_tfnn_floor_x2": {U55: True, U85: True},   # tf_converter
    "resize_nearest_tfnn_floor_x3": {U55: False, U85: True},  # tf_converter
    "resize_nearest_tfnn_x2": {U55: True, U85: True},         # tf_converter
    "resize_nearest_ac_x2": {U55: True, U85: True},           # tf_converter
    "resize_nearest_ac_ceil_x2": {U55: True, U85: True},      # tf_converter
    "resize_nearest_ac_ceil_x4": {U55: True, U85: True},      # tf_converter
    "resize_nearest_ac_int": {U55: False, U85: True},         # tf_converter
    "resize_linear_hp_x2": {U55: True, U85: True},
    "resize_linear_hp_x1": {U55: False, U85: True},   # U55: CPU, no reason given (UPerNet's 6->6 and 48->48)
    "layer_norm_channels": {U55: False, U85: False},  # 2 CPU MEANs: "Unsupported depth-reduction"
    "layer_norm_channels_h1": {U55: True, U85: True},
    "layer_norm_w": {U55: True, U85: True},
    "resize_linear_asym_x1": {U55: True, U85: True},
    "resize_linear_ac_x1": {U55: True, U85: True},
    "resize_linear_hp_x4": {U55: False, U85: True},
    "resize_linear_asym_x4": {U55: True, U85: True},
    "resize_linear_asym_x3": {U55: False, U85: False},
    # 1-D (docs/ethos_u.md *1-D Resize*): RESHAPE, RESIZE_*, RESHAPE on an [N, 1, W, C] map
    "resize_1d_nearest_x2": {U55: True, U85: True},
    "resize_1d_nearest_x3": {U55: False, U85: True},   # U55: "unsupported scale-factor=3"
    "resize_1d_linear_hp_x2": {U55: False, U85: True},   # U55: "HW scale-factor is not equal ... half pixel centers"
    "resize_1d_linear_asym_x3": {U55: False, U85: False},   # U85: "must be an integer power of two"
    "resize_linear_ac_x2": {U55: True, U85: True},
    "resize_linear_ac_int": {U55: False, U85: False},
    "resize_linear_unit": {U55: True, U85: True},
    "resize_ac_pointwise": {U55: True, U85: True},
    "depth_to_space_dcr": {U55: False, U85: False},
    "depth_to_space_crd": {U55: False, U85: False},
    "space_to_depth": {U55: False, U85: False},
    "transpose_nhwc": {U55: True, U85: True},   # onnx2tf folds it into the layout: no TRANSPOSE left
    "transpose_hw": {U55: True, U85: True},
    "shuffle_rank6": {U55: True, U85: True},
    "transpose_hw_wide": {U55: True, U85: True},           # onnx2tf: NCWH on [1,256,512,2]
    "transpose_long_axis": {U55: False, U85: True},        # "permutation NHCW has shape out of range: 1, 2, 66560"
    "transpose_moves_axis0": {U55: False, U85: True},      # "permutation 1, 0, 3, 2 has shape out of range"
    "transpose_rank5_unit_lead": {U55: True, U85: True},
    "transpose_rank6_at_bound": {U55: True, U85: True},
    "transpose_rank6_over_bound": {U55: False, U85: True},  # "... out of range: 1, 2, 2, 2, 128, 130"
    "pad_spatial": {U55: True, U85: True},
    "pad_channel": {U55: True, U85: True},
    "pad_reflect": {U55: True, U85: True},      # tf_converter: MIRROR_PAD
    "pad_edge": {U55: True, U85: True},
    "slice_step1": {U55: True, U85: True},
    "slice_step2_hw": {U55: False, U85: False},
    "slice_step2_c": {U55: True, U85: True},
    "concat": {U55: True, U85: True},
    "concat_1d_conv": {U55: False, U85: False},       # Vela stops: "RESHAPE 'u' Does not have valid TFLite
    "slice_1d_conv": {U55: False, U85: False},        # Semantics. - Input and output quantisation must match"
    "slice_rank6_shuffle": {U55: False, U85: False},
    "shuffle_1d_bias_crop": {U55: True, U85: True},
    "shuffle_1d_crop_bias": {U55: False, U85: False},  # Vela stops, as for slice_1d_conv
    "matmul_2d": {U55: False, U85: False},
    "matmul_4d_const": {U55: False, U85: False},
    "matmul_4d_var": {U55: True, U85: True},    # tf_converter
    "gather_c": {U55: False, U85: False},
    "gather_rows": {U55: False, U85: True},
    "gather_cols": {U55: False, U85: False},
    "gather_batch": {U55: False, U85: True},
    "tile": {U55: True, U85: True},
}


# Cases Vela places on the NPU whose values onnx2tf 2.6.9 does not compute: it writes every nearest
# Resize as RESIZE_NEAREST_NEIGHBOR, floor(x * in/out) (with half_pixel_centers floor((x + 0.5) *
# in/out), with align_corners the rounding of x * (in-1)/(out-1) with ties up), whatever the
# nearest_mode. Measured against onnxruntime on LiteRT, float and int8 alike (test_vela_nearest.py):
# the share of the output pixels taken from another input pixel.
ONNX2TF_INEXACT = {
    "resize_nearest_rpf_x4": "39% (x/4 = k + 0.75 rounds up, onnx2tf floors it)",
    "resize_nearest_hp_floor_x2": "68%",
    "resize_nearest_hp_rpf_8_to_12": "56% (its ties round up in onnx2tf's floor((x + 0.5) * in/out))",
    "resize_nearest_tfnn_x2": "68%",
    "resize_nearest_ac_ceil_x4": "42%",
}
# Exact and on the NPU, but not claimed: the profile format has no key for it.
NOT_CLAIMED = {
    ("resize_nearest_ac_int", U85): "align_corners at (OFM-1)/(IFM-1) = 15/7: corner_factors are integers",
    ("resize_1d_nearest_x3", U85): "1-D at x3: the values not measured (the rank-1 form names x2/x4/x8, measured exact)",
}


# --- default suite: the profiles say what Vela did ---------------------------------------

def profile_fits(model, accelerator) -> bool:
    return not check_model(model, load_profile(PROFILES[accelerator]))


def kept(case, accelerator, on_npu) -> bool:
    """What the profile should say of a case Vela put on the NPU (or not)."""
    return on_npu and case not in ONNX2TF_INEXACT and (case, accelerator) not in NOT_CLAIMED


@pytest.mark.parametrize("accelerator", [U55, U85])
@pytest.mark.parametrize("case", sorted(VELA_5_2))
def test_profile_predicts_recorded_vela(case, accelerator):
    rule, build = CASES[case]
    model = build()
    on_npu = VELA_5_2[case][accelerator]
    why = ONNX2TF_INEXACT.get(case) or NOT_CLAIMED.get((case, accelerator))
    assert profile_fits(model, accelerator) == kept(case, accelerator, on_npu), \
        f"{case} ({rule}): Vela 5.2 placed it {'all on the NPU' if on_npu else 'partly on the CPU'}" + \
        (f" (but: {why})" if why else "")


# The keys that say which form of an operator's rule list a node is held to (the kind of Conv,
# the Resize's mode and coordinates): a node of another kind breaks them without that form
# being the reason it does not fit. Every other key limits the nodes of the form's kind.
SELECTOR_KEYS = {"groups", "modes", "coordinate_transformation_modes", "nearest_modes"}

# Operators with no case at all, and why.
EXEMPT = {
    (U55, "Upsample"): "not emitted by onnx2tf's exporters of today; it shares Resize's TFLite operators",
    (U85, "Upsample"): "not emitted by onnx2tf's exporters of today; it shares Resize's TFLite operators",
}
# Operators whose forms have obeying cases but no breaking one, and why. Pad's one mode left out,
# wrap (opset 19), cannot be measured: onnx2tf 2.6.9 converts it with neither backend
# (flatbuffer_direct: 'Pad mode is not supported in flatbuffer_direct ... mode=wrap';
# tf_converter: tf.pad takes only CONSTANT, REFLECT and SYMMETRIC).
NO_BREAKING_CASE = {
    (U55, "Pad"): "mode wrap: onnx2tf 2.6.9 does not convert it",
    (U85, "Pad"): "mode wrap: onnx2tf 2.6.9 does not convert it",
}


def form_problems(model, accelerator):
    """For each node under test (every node but the leading 1x1 Conv) that the
    profile has rules for: (operator, [the keys each form of its rule list breaks])."""
    from convrewrite.core.graph import GraphView
    from convrewrite.target.check import unit_batch
    from convrewrite.target.facts import node_facts
    from convrewrite.target.rules import _rule_problems

    profile = load_profile(PROFILES[accelerator])
    graph = GraphView(unit_batch(model))
    for node in graph.graph.node:
        rules = profile.rules(node.op_type)
        if node.name != "pre" and rules is not None:
            facts = node_facts(node, graph)
            yield node.op_type, [{key.rsplit(".", 1)[-1] for key, _ in _rule_problems(r, facts)} for r in rules]


def is_the_reason(rule, broken: set) -> bool:
    """A node that fits no form fails because of `rule` when it is of the
    rule's kind (meets its selector keys) and breaks one of its limits, or,
    for a rule with no limits beyond its selectors, when it breaks those."""
    limits = set(rule.to_dict()) - {"note"}
    if not limits - SELECTOR_KEYS:
        return bool(broken)
    return bool(broken) and not broken & SELECTOR_KEYS


def test_every_case_is_recorded_and_every_rule_has_both_sides():
    """Per form of each operator's rule list: a case whose operator fits it, and,
    where the form limits something, a case that fits no form because of it."""
    assert set(VELA_5_2) == set(CASES)
    for accelerator in (U55, U85):
        profile = load_profile(PROFILES[accelerator])
        fitted, failed = set(), set()   # (operator, form index)
        for case, (_, build) in CASES.items():
            for op, per_form in form_problems(build(), accelerator):
                rules = profile.rules(op)
                fitted |= {(op, k) for k, broken in enumerate(per_form) if not broken}
                if all(per_form):
                    failed |= {(op, k) for k, broken in enumerate(per_form) if is_the_reason(rules[k], broken)}
        for op, rules in profile.operators.items():
            if (accelerator, op) in EXEMPT:
                continue
            for k, rule in enumerate(rules):
                form = f"{accelerator}: {rule.where or op}"
                if not rule.supported:
                    assert (op, k) in failed, f"{form} (unsupported) has no case"
                    continue
                assert (op, k) in fitted, f"{form} has no case that fits it"
                limits = set(rule.to_dict()) - {"note"}
                if limits and (accelerator, op) not in NO_BREAKING_CASE:
                    assert (op, k) in failed, f"{form} has no case that fails because of it"


# --- the tier with the real compiler ----------------------------------------------------------

def _toolchain():
    from benchmarks import ethos_u

    why = ethos_u.tools_missing()
    if why:
        pytest.skip(f"Vela tier: {why}; see benchmarks/requirements-ethos-u.txt")
    return ethos_u


@pytest.fixture(scope="module")
def placement(tmp_path_factory):
    """A case through onnx2tf -oiqt and Vela for both accelerators, once
    (only the cases a run selects are compiled): case -> ({accel: VelaResult}, error)."""
    eu = _toolchain()
    root = tmp_path_factory.mktemp("vela")
    done = {}

    def compile_case(case):
        if case not in done:
            work = root / case
            work.mkdir()
            path = str(work / f"{case}.onnx")
            onnx.save(CASES[case][1](), path)
            _, res, err = eu.compile_onnx(path, [U55, U85], str(work))
            done[case] = (res, err)
        return done[case]
    return compile_case


# Vela's errors that say the model is not all on the NPU (not a failure of the toolchain)
VELA_STOPS = ("could not run on NPU", "Does not have valid TFLite Semantics")


@pytest.mark.slow   # onnx2tf and Vela per case (skipped without them)
@pytest.mark.parametrize("accelerator", [U55, U85])
@pytest.mark.parametrize("case", sorted(CASES))
def test_vela_places_as_the_profile_predicts(placement, case, accelerator):
    res, err = placement(case)
    assert not err, f"{case}: onnx2tf failed: {err}"
    r = res[accelerator]
    # Vela may also stop instead of falling back (a padded stride-4 CONV_2D on the U55), or refuse
    # the .tflite (a RESHAPE whose int8 scales onnx2tf made differ: no_reshaped_inputs)
    assert r.ok or any(s in r.error for s in VELA_STOPS), f"{case}: vela failed: {r.error}"
    on_npu = r.ok and r.cpu == 0
    if case in VELA_5_2:
        assert on_npu == VELA_5_2[case][accelerator], f"{case}: Vela's placement changed since 5.2.0"
    fits = profile_fits(CASES[case][1](), accelerator)
    assert kept(case, accelerator, on_npu) == fits, (
        f"{case} ({CASES[case][0]}) on {accelerator}: Vela put {r.cpu} operator(s) on the CPU "
        f"({dict(r.cpu_ops)}), the profile says it {'fits' if fits else 'does not fit'}")


# --- dilated Convs: Vela computes the zeros of the kernel ----------------------------------------
#
# Vela 5.2 runs a CONV_2D dilated by more than 2 as a dense kernel holding the zeros (the
# hardware dilates by 1 or 2); the profiles' `dense_dilation` says so, and from how many saved
# MACs per output value the taps form (one Conv per tap, summed) is worth it. Each case: a
# 1x1 Conv, then a 3x3 Conv at a rate, on a 32x32 map; Vela's estimate in ms of the model as
# it is and rewritten to the taps form (onnx2tf 2.6.9 -oiqt; flatbuffer_direct, the depthwise
# case tf_converter). The taps form is faster exactly where the profile lowers the Conv, but
# for the gains left out below.

DENSE_CASES = {   # case: (channels, rate, group) -> MACs per output value saved: (dense - 9) * channels / group
    "dense_c32_rate2": (32, 2, 1),       # native: 0
    "dense_c32_rate3": (32, 3, 1),       # 7x7: 1280
    "dense_c32_rate4": (32, 4, 1),       # 5x5: 512
    "dense_c32_rate6": (32, 6, 1),       # 7x7: 1280
    "dense_c32_rate12": (32, 12, 1),     # 13x13: 5120
    "dense_c64_rate6": (64, 6, 1),       # 2560
    "dense_c96_rate6": (96, 6, 1),       # 3840
    "dense_c128_rate6": (128, 6, 1),     # 5120
    "dense_c128_rate3": (128, 3, 1),     # 5120
    "dense_dw128_rate12": (128, 12, 128),  # depthwise 13x13: 160
    "dense_c512_rate4": (512, 4, 1),     # 5x5: 8192, but 2.8x the true taps' (timm_resnet18_os8's layer4)
}
VELA_5_2_DENSE = {   # case: {accelerator: (original ms, taps form ms)}
    "dense_c32_rate2": {U55: (0.187, 2.766), U85: (0.132, 0.597)},
    "dense_c32_rate3": {U55: (0.847, 3.150), U85: (0.299, 0.628)},
    "dense_c32_rate4": {U55: (0.452, 2.658), U85: (0.199, 0.581)},
    "dense_c32_rate6": {U55: (0.848, 2.621), U85: (0.299, 0.571)},
    "dense_c32_rate12": {U55: (2.830, 2.402), U85: (0.798, 0.549)},
    "dense_c64_rate6": {U55: (3.298, 5.241), U85: (0.920, 1.063)},
    "dense_c96_rate6": {U55: (7.401, 8.327), U85: (2.031, 1.810)},
    "dense_c128_rate6": {U55: (13.143, 11.698), U85: (3.558, 2.631)},
    "dense_c128_rate3": {U55: (13.139, 12.045), U85: (3.558, 2.740)},
    "dense_dw128_rate12": {U55: (3.095, 7.170), U85: (0.849, 2.857)},
    "dense_c512_rate4": {U55: (109.176, 78.287), U85: (61.616, 57.623)},
}
# Faster in the taps form but not lowered: on the U85 the whole timm_resnet18_os8, whose three
# layer4 Convs are this case, went 111.205 -> 130.178 ms (arm-ethos-u85's min_dense_ratio 5).
GAINS_LEFT_OUT = {("dense_c512_rate4", U85)}


def dense_case(case):
    channels, rate, group = DENSE_CASES[case]
    return conv(3, d=rate, group=group, c=channels, h=32, cout=channels)


def profile_lowers(model, accelerator) -> bool:
    from convrewrite.core.graph import GraphView
    from convrewrite.target import needs_lowering

    graph = GraphView(model)
    return needs_lowering(graph.graph.node[-1], graph, load_profile(PROFILES[accelerator])) is not None


@pytest.mark.parametrize("accelerator", [U55, U85])
@pytest.mark.parametrize("case", sorted(DENSE_CASES))
def test_profile_lowers_a_dilated_conv_where_vela_ran_the_taps_form_faster(case, accelerator):
    original, taps = VELA_5_2_DENSE[case][accelerator]
    faster = taps < original and (case, accelerator) not in GAINS_LEFT_OUT
    assert profile_lowers(dense_case(case), accelerator) == faster, \
        f"{case} on {accelerator}: Vela 5.2 estimated {original} ms as it is, {taps} ms in the taps form"


@pytest.mark.slow   # onnx2tf and Vela per case (skipped without them)
@pytest.mark.parametrize("case", sorted(DENSE_CASES))
def test_vela_runs_the_taps_form_faster_where_the_profile_lowers(case, tmp_path):
    """Both models through onnx2tf and Vela: the original, and the taps form
    (a profile extending arm-ethos-u55 that lowers every dilated Conv)."""
    import json

    from convrewrite import optimize

    eu = _toolchain()
    forced = tmp_path / "every-dilation.json"
    forced.write_text(json.dumps({"extends": "arm-ethos-u55", "dense_dilation": {"native_dilations": [1]}}))
    rewritten, report = optimize(dense_case(case), passes=["dilated-conv"], target=str(forced))
    assert [r.form for r in report.records("rewritten")] == ["taps"]
    estimates = {}
    for name, model in (("original", dense_case(case)), ("taps", rewritten)):
        path = str(tmp_path / f"{name}.onnx")
        onnx.save(model, path)
        _, res, err = eu.compile_onnx(path, [U55, U85], str(tmp_path / name))
        assert not err, f"{case} {name}: onnx2tf failed: {err}"
        assert all(r.ok and r.cpu == 0 for r in res.values()), f"{case} {name}: {res}"
        estimates[name] = {a: r.ms for a, r in res.items()}
    for accelerator in (U55, U85):
        original, taps = estimates["original"][accelerator], estimates["taps"][accelerator]
        faster = taps < original and (case, accelerator) not in GAINS_LEFT_OUT
        assert profile_lowers(dense_case(case), accelerator) == faster, \
            f"{case} on {accelerator}: Vela estimates {original:.3f} ms as it is, {taps:.3f} ms in the taps form"

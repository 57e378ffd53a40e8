"""What torch modules and functions are, by class and by (ATen) function name."""

from __future__ import annotations

import re


def _module_classes(torch):
    nn = torch.nn
    activations = {
        nn.ReLU: "relu",
        nn.ReLU6: "relu6",
        nn.LeakyReLU: "leaky_relu",
        nn.PReLU: "prelu",
        nn.ELU: "elu",
        nn.CELU: "elu",
        nn.SELU: "selu",
        nn.GELU: "gelu",
        nn.SiLU: "silu",
        nn.Mish: "mish",
        nn.Tanh: "tanh",
        nn.Sigmoid: "sigmoid",
        nn.Softplus: "softplus",
        nn.Hardswish: "hardswish",
        nn.Hardsigmoid: "hardsigmoid",
        nn.Hardtanh: "hardtanh",
        nn.Softsign: "softsign",
    }
    norms = tuple(
        getattr(nn, n)
        for n in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "RMSNorm", "LocalResponseNorm")
        if hasattr(nn, n)
    )
    pools = tuple(
        getattr(nn, n)
        for n in dir(nn)
        if n.endswith(("Pool1d", "Pool2d", "Pool3d")) and isinstance(getattr(nn, n), type)
    )
    passthrough = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity, nn.Flatten, nn.Unflatten, nn.Upsample, nn.ZeroPad2d, nn.PixelShuffle)
    return activations, norms, pools, passthrough


_FUNCTION_ACTIVATIONS = {
    "relu": "relu",
    "relu_": "relu",
    "relu6": "relu6",
    "leaky_relu": "leaky_relu",
    "elu": "elu",
    "selu": "selu",
    "celu": "elu",
    "gelu": "gelu",
    "silu": "silu",
    "mish": "mish",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "softplus": "softplus",
    "hardswish": "hardswish",
    "hardsigmoid": "hardsigmoid",
    "hardtanh": "hardtanh",
    "softsign": "softsign",
    "prelu": "prelu",
}

_FUNCTION_PASSTHROUGH = {
    "flatten", "reshape", "view", "permute", "transpose", "contiguous", "squeeze", "unsqueeze", "dropout",
    "getitem", "chunk", "split", "expand", "repeat", "to", "float", "type_as", "clone", "detach", "pad",
    "interpolate", "neg", "sub", "truediv", "div", "t", "narrow", "roll", "flip", "unbind", "select",
}

_FUNCTION_POOLS = {"max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "mean", "amax", "sum"}

_FUNCTION_NORMS = {"layer_norm", "batch_norm", "group_norm", "instance_norm", "rms_norm", "normalize"}

_SHAPE_FUNCTIONS = {"size", "dim", "numel", "shape", "getattr", "sym_size", "sym_numel", "sym_stride"}


# ATen spellings (torch.export graphs) of ops the tables above already cover.
_FUNCTION_PASSTHROUGH |= {
    "to_copy", "unsafe_view", "slice", "alias", "native_dropout", "split_with_sizes", "expand_as", "view_as",
    "reshape_as", "flatten_using_ints", "assert_tensor_metadata", "upsample_nearest2d", "upsample_bilinear2d",
    "constant_pad_nd", "lift_fresh_copy",
}


_FUNCTION_NORMS |= {"native_layer_norm", "native_batch_norm_legit_functional", "native_batch_norm_legit_no_training", "native_group_norm"}

_FUNCTION_POOLS |= {"adaptive_avg_pool3d", "max_pool2d_with_indices", "adaptive_max_pool1d", "avg_pool"}

_FUNCTION_CONVS = {"conv1d": False, "conv2d": False, "conv3d": False, "conv_transpose1d": True, "conv_transpose2d": True, "conv_transpose3d": True}


# Normalization modules by class name: nn.LayerNorm, BatchNorm2d, and hand-written ones
# (LlamaRMSNorm, T5LayerNorm, ...).
_NORM_CLASS = re.compile(r"Norm(\d+d)?$")


# Activation modules written as several elementwise ops (transformers' gelu_new is
# 0.5x(1 + tanh(...)), quick_gelu x*sigmoid(1.702x)). Traced, they fall apart into mul/pow/tanh/add
# nodes whose Add looks like a residual; each call is read as one activation, as its nn counterpart.
_COMPOSITE_ACTIVATIONS = {
    "NewGELUActivation": "gelu",
    "GELUActivation": "gelu",
    "FastGELUActivation": "gelu",
    "QuickGELUActivation": "gelu",
    "AccurateGELUActivation": "gelu",
    "ClippedGELUActivation": "gelu",
    "GELUTanh": "gelu",
    "PytorchGELUTanh": "gelu",
    "QuickGELU": "gelu",
    "SiLUActivation": "silu",
    "Swish": "silu",
    "MishActivation": "mish",
    "Mish": "mish",
}

"""Keras 3 models as a user writes them (the seed's comparison: the same deep Dense stack with
Keras' default glorot_uniform and with he_normal, ReLU; and with sigmoid). Specs for the
command line: ``initlint tests/keras_specs.py:glorot_relu``."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402

DEPTH, WIDTH = 20, 64


def dense_stack(activation: str, kernel_initializer: str = "glorot_uniform", depth: int = DEPTH):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((WIDTH,))]
    layers += [keras.layers.Dense(WIDTH, activation=activation, kernel_initializer=kernel_initializer) for _ in range(depth)]
    layers.append(keras.layers.Dense(10))
    return keras.Sequential(layers)


def glorot_relu():
    return dense_stack("relu")  # Keras' default init


def he_relu():
    return dense_stack("relu", "he_normal")


def glorot_sigmoid():
    return dense_stack("sigmoid")


def residual_cnn():
    """A small functional CNN: Conv, BatchNormalization, activation layers, a residual Add."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", kernel_initializer="he_normal")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu", kernel_initializer="he_normal")(x)
    y = keras.layers.Conv2D(8, 3, padding="same", kernel_initializer="zeros")(y)  # zero last conv of a residual branch
    x = keras.layers.Add()([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4)(x)
    return keras.Model(inputs, outputs)

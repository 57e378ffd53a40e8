"""Fix hints are the exact call with its arguments, and read in Keras' words for a Keras model."""

from __future__ import annotations

from initlint.fixes import TANH_GAIN, init_call
from initlint.loaders.keras.vocabulary import keras_fix


def test_init_call_names_the_parameter_and_quotes_only_strings():
    assert init_call("kaiming_normal_", "fc1.weight", nonlinearity="relu") == 'nn.init.kaiming_normal_(model.get_parameter("fc1.weight"), nonlinearity="relu")'
    assert init_call("xavier_uniform_", "fc1.weight", gain=TANH_GAIN) == 'nn.init.xavier_uniform_(model.get_parameter("fc1.weight"), gain=nn.init.calculate_gain("tanh"))'
    assert init_call("normal_", "fc1.weight", mean=0.0, std=0.05) == 'nn.init.normal_(model.get_parameter("fc1.weight"), mean=0, std=0.05)'


def test_exact_calls_become_keras_initializers():
    assert keras_fix("run " + init_call("kaiming_normal_", "dense/kernel", nonlinearity="relu")) == 'run kernel_initializer="he_normal"'
    assert keras_fix(init_call("zeros_", "dense/bias")) == 'bias_initializer="zeros"'
    assert "VarianceScaling(scale=2.779" in keras_fix(init_call("xavier_uniform_", "dense/kernel", gain=TANH_GAIN))

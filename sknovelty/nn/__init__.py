"""PyTorch building blocks shared by the sknovelty detectors."""

from .autoencoders import (ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, build_autoencoder,
                           check_autoencoder_parameters, reconstruction_error)
from .autoregressive import AutoregressiveEstimator, MaskedFullyConnected
from .blocks import ResidualDown2d, ResidualUp2d
from .flows import Glow

__all__ = [
    "AutoregressiveEstimator",
    "ConvDecoder",
    "ConvEncoder",
    "Glow",
    "MLPDecoder",
    "MLPEncoder",
    "MaskedFullyConnected",
    "ResidualDown2d",
    "ResidualUp2d",
    "build_autoencoder",
    "check_autoencoder_parameters",
    "reconstruction_error",
]

"""PyTorch building blocks shared by the sknovelty detectors."""

from .autoencoders import (ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, build_autoencoder,
                           check_autoencoder_parameters, reconstruction_error)
from .autoencoders import VideoDecoder, VideoEncoder
from .autoregressive import (AutoregressiveEstimator, DiscretizedLogisticMixture,
                             MaskedFullyConnected, MaskedStackedConvolution,
                             SpatioTemporalEstimator)
from .blocks import CausalConv3d, ResidualDown2d, ResidualDown3d, ResidualUp2d, ResidualUp3d
from .flows import Glow

__all__ = [
    "AutoregressiveEstimator",
    "CausalConv3d",
    "ConvDecoder",
    "ConvEncoder",
    "DiscretizedLogisticMixture",
    "Glow",
    "MLPDecoder",
    "MLPEncoder",
    "MaskedFullyConnected",
    "MaskedStackedConvolution",
    "ResidualDown2d",
    "ResidualDown3d",
    "ResidualUp2d",
    "ResidualUp3d",
    "SpatioTemporalEstimator",
    "VideoDecoder",
    "VideoEncoder",
    "build_autoencoder",
    "check_autoencoder_parameters",
    "reconstruction_error",
]

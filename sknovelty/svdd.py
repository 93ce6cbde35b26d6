"""Deep SVDD: a network trained to map normal data close to a fixed centre.

Ruff et al., "Deep One-Class Classification", ICML 2018. A network phi without bias terms
maps each sample into a space of ``latent_dim`` dimensions, and is trained to bring normal
samples close to a centre c fixed before training (One-Class Deep SVDD, eq. 4):

    min_W  1/n sum_i ||phi(x_i; W) - c||^2  +  lambda/2 sum_l ||W^l||_F^2

The anomaly score of a sample is its squared distance to c (eq. 5); ``score_samples`` returns
minus that distance, min-max scaled on held-out normal rows (higher = more normal).

The paper's conditions against a trivial solution (sec. 3.3: all samples mapped onto c) are
kept: c is not a free parameter but the mean of an initial forward pass over the training
rows (no coordinate within 0.1 of zero), and no layer has a bias term (a batch
normalisation without affine parameters instead), nor a bounded activation.
"""

import numbers

import torch
from sklearn.utils._param_validation import Interval
from skorch.callbacks import LRScheduler
from torch import nn
from torch.optim.lr_scheduler import MultiStepLR

from ._checks import check_positive_ints
from .base import BaseDeepDetector
from .engine import batch_bounds


def _bias_free_block(layer, n_out, batchnorm):
    """A bias-free linear map, a normalisation without affine parameters, leaky ReLU."""
    return [layer, batchnorm(n_out, eps=1e-4, affine=False), nn.LeakyReLU(0.01)]


class SVDDEncoder(nn.Module):
    """phi: a bias-free LeNet-type network (images) or MLP (vectors) onto ``latent_dim`` values.

    Images: per entry of ``channels`` a 5x5 convolution, batch normalisation, leaky ReLU and
    2x2 max pooling, then a linear map (the paper's MNIST network is ``channels=(8, 4)`` and
    ``latent_dim=32``; its CIFAR-10 network ``(32, 64, 128)`` and 128). Vectors: per entry
    of ``hidden_dims`` a linear map, batch normalisation and leaky ReLU, then a linear map.
    """

    def __init__(self, sample_shape, latent_dim, channels, hidden_dims):
        super().__init__()
        layers = []
        if len(sample_shape) == 3:
            c_in, h, w = sample_shape
            for c_out in channels:
                layers += _bias_free_block(nn.Conv2d(c_in, c_out, 5, padding=2, bias=False),
                                           c_out, nn.BatchNorm2d)
                if min(h, w) >= 2:
                    layers.append(nn.MaxPool2d(2))
                    h, w = h // 2, w // 2
                c_in = c_out
            n_flat = c_in * h * w
        else:
            n_flat = sample_shape[0]
            for width in hidden_dims:
                layers += _bias_free_block(nn.Linear(n_flat, width, bias=False), width,
                                           nn.BatchNorm1d)
                n_flat = width
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.project = nn.Linear(n_flat, latent_dim, bias=False)

    def forward(self, x):
        return self.project(self.features(x))


class DeepSVDDModule(nn.Module):
    """phi and its centre c (a buffer: fixed, saved with the weights)."""

    def __init__(self, sample_shape, latent_dim, channels, hidden_dims):
        super().__init__()
        self.phi = SVDDEncoder(sample_shape, latent_dim, channels, hidden_dims)
        self.register_buffer("center", torch.zeros(latent_dim))

    def forward(self, x):
        return self.phi(x), self.center

    @torch.no_grad()
    def fix_center(self, X, batch_size, eps=0.1):
        """c = the mean of phi over ``X``, each coordinate at least ``eps`` away from zero
        (a coordinate of exactly zero becomes ``+eps``). ``X`` is moved to c's device batch
        by batch.

        The pass runs in training mode, so batch normalisation uses the statistics of each
        batch of ``batch_size`` rows as it will in training; the running statistics it
        gathers are reset afterwards, so that training starts as if the pass had not
        happened.
        """
        self.train()
        total = torch.zeros_like(self.center, dtype=torch.float64)
        for start, stop in batch_bounds(len(X), batch_size):  # no one-row batch, as in training
            total += self.phi(X[start:stop].to(self.center.device)).sum(0, dtype=torch.float64)
        c = (total / len(X)).float()
        near_zero = c.abs() < eps
        c[near_zero] = torch.where(c[near_zero] < 0, -eps, eps)
        self.center.copy_(c)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()


class SVDDLoss(nn.Module):
    """Eq. 4's data term: the mean squared distance to c (the weight decay is Adam's)."""

    def per_sample(self, output, x):
        phi, center = output
        return {"dist": (phi - center).square().sum(1)}

    def forward(self, output, x):
        return self.per_sample(output, x)["dist"].mean()


class DeepSVDDDetector(BaseDeepDetector):
    """One-Class Deep SVDD (Ruff et al., ICML 2018): distance to a centre in a learned space.

    A bias-free network phi is trained to minimise the mean squared distance of the normal
    training rows to a centre c, fixed beforehand as the mean of phi over the training rows
    (eq. 4); a sample's novelty is its squared distance to c (eq. 5). ``score_samples``
    returns minus the distance min-max scaled on held-out normal rows (higher = more normal).

    Departures from the paper: the paper initialises phi from a pretrained autoencoder; here
    phi starts from PyTorch's default initialisation (the paper's objective and centre rule
    are unchanged). Without pretraining, the initial pass that fixes c runs in training mode
    (batch normalisation with each batch's statistics, as training then sees phi; the
    authors' code runs it in evaluation mode, after pretraining), and the running statistics
    it gathers are reset. The centre's coordinates are kept at least 0.1 away from zero, as
    the authors' original code does (there a coordinate of exactly zero stays zero; here it
    becomes 0.1). Vectors go through a bias-free MLP (the paper has images only).

    Parameters
    ----------
    latent_dim : int, default=32
        Dimension of phi's output space (the paper's MNIST network: 32).
    channels : tuple of int, default=(8, 4)
        Images: output channels of the 5x5 convolution blocks (the paper's MNIST network).
    hidden_dims : tuple of int, default=(128, 64)
        Vectors: widths of the hidden layers of the MLP.
    weight_decay : float, default=5e-7
        The weight decay lambda of eq. 4, applied by Adam (the authors' MNIST setting).
    lr_milestones : tuple of int, default=(50,)
        Epochs after which the learning rate is divided by 10 (the paper's two-phase
        schedule: 1e-4, then 1e-5 after epoch 50).
    epochs : int, default=150
    learning_rate : float, default=1e-4
        The paper's settings.
    batch_size : int or "auto", default="auto"
        64, or fewer so that an epoch keeps 6 batches on small training sets (the paper: 200).
    validation_fraction, contamination, device, random_state, verbose, image_shape,
    callbacks, n_jobs, score_batch_size, precision
        See :class:`~sknovelty.base.BaseDeepDetector`.

    Attributes
    ----------
    net_ : skorch net
        The trained network; ``net_.module_.center`` is c.
    normalization_, offset_, sample_shape_, device_, n_features_in_, batch_size_,
    simple_input_auroc_, complexity_correlation_
        As in :class:`~sknovelty.LatentAutoregressiveDetector`.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sknovelty import DeepSVDDDetector
    >>> X, y = load_digits(return_X_y=True)
    >>> X = (X / 16).astype("float32").reshape(-1, 1, 8, 8)
    >>> det = DeepSVDDDetector(epochs=5, random_state=0).fit(X[y == 0])
    >>> bool(det.score_samples(X[y == 0][:50]).mean() > det.score_samples(X[y == 1][:50]).mean())
    True
    """

    _sample_ranks = (1, 3)
    _novelty_terms = ("dist",)
    #: epoch numbers, not sizes: a model file may hold any (``sknovelty.io.check_param_limits``)
    _unbounded_params = ("lr_milestones",)

    def __init__(self, latent_dim=32, channels=(8, 4), hidden_dims=(128, 64), weight_decay=5e-7,
                 lr_milestones=(50,), *, epochs=150, batch_size="auto", learning_rate=1e-4,
                 validation_fraction=0.1, contamination=0.1, device="auto", random_state=None,
                 verbose=0, image_shape=None, callbacks=None, n_jobs=None,
                 score_batch_size="auto", precision="float32"):
        self.latent_dim = latent_dim
        self.channels = channels
        self.hidden_dims = hidden_dims
        self.weight_decay = weight_decay
        self.lr_milestones = lr_milestones
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.contamination = contamination
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.image_shape = image_shape
        self.callbacks = callbacks
        self.n_jobs = n_jobs
        self.score_batch_size = score_batch_size
        self.precision = precision

    _parameter_constraints = {
        **BaseDeepDetector._parameter_constraints,
        "latent_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "channels": [tuple, list],
        "hidden_dims": [tuple, list],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "lr_milestones": [tuple, list],
    }

    def _check_hyperparameters(self):
        check_positive_ints("channels", self.channels)
        check_positive_ints("hidden_dims", self.hidden_dims)
        if len(self.lr_milestones):
            check_positive_ints("lr_milestones", self.lr_milestones)

    def _build_module(self, sample_shape, input_range):
        return DeepSVDDModule(sample_shape, self.latent_dim, tuple(self.channels),
                              tuple(self.hidden_dims))

    def _build_criterion(self, sample_shape):
        return SVDDLoss()

    def _prepare_training(self, module, X_train):
        module.to(self.device_).fix_center(X_train, self.batch_size_)

    def _net_kwargs(self):
        return {"optimizer__weight_decay": self.weight_decay}

    def _method_callbacks(self):
        milestones = sorted(int(m) for m in self.lr_milestones)
        return [("lr_milestones", LRScheduler(MultiStepLR, milestones=milestones, gamma=0.1))]

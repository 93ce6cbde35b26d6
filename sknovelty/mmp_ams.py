"""MMP-AMS: masked multi-prediction on several aspects of video objects (Naji et al., sec. 4).

Each sample is one object of a frame, as an object detector gives it: the crop of its box at
t (``X_P``), the crop of the same box at t+1 (the future, ``X_F``), the optical-flow magnitude
in the box (``X_O``), its class (``X_C``, one-hot) and its box (centre and size). From the
masked crop ``X_MP = X_P * M`` one set of states ``h_0 = P(X_MP)``, ``h_k = R(h_{k-1})`` drives
one prediction network per aspect (sec. 4.1-4.2): ``f_F`` predicts n future crops, ``f_O`` n
flow maps, ``f_C`` n class distributions, each trained with ``L_NN + lam * L_NP`` (eq. 7; its
own participation counts per aspect). The location module (sec. 4.3, eq. 8) models each box
coordinate as a Gaussian whose mean and spread a small network computes from the class. The
object score is eq. 9-10: each aspect's error z-scored on held-out normal objects, weighted,
summed; a frame scores as its most novel object (:func:`object_to_frame_scores`).

A scikit-learn estimator takes arrays, so an object is one flat row (:func:`pack_objects`);
:func:`make_object_samples` builds the rows from frames, boxes and classes (computing the flow
with OpenCV's Farneback method when none is given).
"""

import math
import numbers
from typing import NamedTuple

import numpy as np
import torch
from skorch.callbacks import Callback
from sklearn.utils._param_validation import Interval
from torch import nn
from torch.nn import functional as F

from ._checks import check_positive_ints
from .base import BaseDeepDetector
from .mmp import Encoder, MMPLoss, StateConditionalNetwork, StateGenerator, patch_mask

__all__ = ["MultiAspectDetector", "ObjectSamples", "detect_moving_objects", "make_object_samples",
           "object_to_frame_scores", "pack_objects", "unpack_objects"]

#: the aspects of the paper (Table 5): future appearance, optical flow, class, and location
ASPECTS = ("F", "O", "C", "location")


# ----------------------------------------------------------------------------- object rows
def _sizes(crop_shape, n_classes):
    c, h, w = crop_shape
    return {"crop": c * h * w, "future": c * h * w, "flow": h * w, "cls": n_classes, "box": 4}


def pack_objects(crops, future_crops, flows, classes, boxes, n_classes):
    """One flat row per object: ``[crop | future crop | flow | one-hot class | box]``.

    Parameters
    ----------
    crops, future_crops : array-like of shape (n, C, s, s)
        The object's box cut from frame t and from frame t+1, values in [0, 1].
    flows : array-like of shape (n, s, s)
        Optical-flow magnitude in the box between t and t+1, scaled to about [0, 1].
    classes : array-like of int of shape (n,)
        Class index of each object, in ``[0, n_classes)``.
    boxes : array-like of shape (n, 4)
        Centre x, centre y, width and height of each box, divided by the frame's width or
        height (so in [0, 1]).
    n_classes : int

    Returns
    -------
    ndarray of shape (n, 2 C s s + s s + n_classes + 4), float32

    See Also
    --------
    unpack_objects : The inverse.
    make_object_samples : Rows from frames, boxes and classes.
    """
    crops = np.asarray(crops, np.float32)
    n, cs = len(crops), crops.shape[1:]
    classes = np.asarray(classes)
    if classes.min(initial=0) < 0 or classes.max(initial=0) >= n_classes:
        raise ValueError(f"classes must lie in [0, {n_classes}), got {classes.min()}..{classes.max()}")
    parts = [crops.reshape(n, -1), np.asarray(future_crops, np.float32).reshape(n, -1),
             np.asarray(flows, np.float32).reshape(n, -1), np.eye(n_classes, dtype=np.float32)[classes],
             np.asarray(boxes, np.float32).reshape(n, 4)]
    if parts[1].shape[1] != parts[0].shape[1] or parts[2].shape[1] != math.prod(cs[1:]):
        raise ValueError("crops, future_crops and flows must cover boxes of the same size")
    return np.concatenate(parts, axis=1)


def unpack_objects(X, crop_shape, n_classes):
    """The parts of object rows (arrays or tensors): a dict of ``crop``, ``future`` (n, C, s,
    s), ``flow`` (n, 1, s, s), ``cls`` (n, n_classes) and ``box`` (n, 4).

    Parameters
    ----------
    X : ndarray or tensor of shape (n, D)
        Rows made by :func:`pack_objects`.
    crop_shape : tuple (C, s, s)
    n_classes : int

    Returns
    -------
    dict of str -> array or tensor

    See Also
    --------
    pack_objects : The layout.
    """
    sizes = _sizes(crop_shape, n_classes)
    if X.shape[1] != sum(sizes.values()):
        raise ValueError(f"object rows of crop_shape={tuple(crop_shape)} and n_classes={n_classes}"
                         f" have {sum(sizes.values())} values, got {X.shape[1]}")
    out, start = {}, 0
    shapes = {"crop": crop_shape, "future": crop_shape, "flow": (1, *crop_shape[1:])}
    for name, size in sizes.items():
        part = X[:, start:start + size]
        out[name] = part.reshape(len(X), *shapes[name]) if name in shapes else part
        start += size
    return out


class ObjectSamples(NamedTuple):
    """Object rows and where they come from: ``X`` (n, D) for :class:`MultiAspectDetector`,
    ``frame_index`` (n,) the frame of each object, ``flow_scale`` the flow magnitude mapped to
    1 (pass it again for test videos)."""

    X: np.ndarray
    frame_index: np.ndarray
    flow_scale: float


def _farneback(frames):
    try:
        import cv2
    except ImportError as exc:
        raise ImportError("computing optical flow needs OpenCV: pip install "
                          "opencv-python-headless (or pass flow=...)") from exc
    grey = (np.clip(frames if frames.ndim == 3 else frames.mean(-1), 0, 1) * 255).astype(np.uint8)
    return np.stack([cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
                     for a, b in zip(grey[:-1], grey[1:])])


def _crop(image, box, size):
    """``image`` (C, H, W) tensor cut to ``box`` (x0, y0, x1, y1) and resized to size x size."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    patch = image[:, max(y0, 0):max(y1, y0 + 1), max(x0, 0):max(x1, x0 + 1)]
    return F.interpolate(patch[None], size=(size, size), mode="bilinear", align_corners=False)[0]


def make_object_samples(frames, boxes, classes, n_classes, crop_size=32, flow=None,
                        flow_scale=None):
    """Object rows of a video from its frames and its detections.

    Every object of frame t < n_frames - 1 gives one row: its box cut from frames t and t+1
    (the same box: the future appearance at the object's place), the flow magnitude in the
    box, its class and its box relative to the frame. The crops are resized to
    ``crop_size`` (bilinear).

    Parameters
    ----------
    frames : array-like of shape (n_frames, H, W) or (n_frames, H, W, C), values in [0, 1]
    boxes : sequence of n_frames arrays of shape (k_t, 4)
        Boxes ``(x0, y0, x1, y1)`` in pixels of each frame's objects (from a detector).
    classes : sequence of n_frames arrays of shape (k_t,)
        Their class indices.
    n_classes : int
    crop_size : int, default=32
    flow : array-like of shape (n_frames - 1, H, W, 2) or None, default=None
        Optical flow from each frame to the next; None computes it with OpenCV's Farneback
        method (``pip install opencv-python-headless``).
    flow_scale : float or None, default=None
        Magnitude mapped to 1; None takes the 99th percentile of the boxes' magnitudes here
        (use the training video's value for test videos).

    Returns
    -------
    ObjectSamples

    See Also
    --------
    MultiAspectDetector : The detector that scores the rows.
    object_to_frame_scores : Object scores to frame scores.
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim == 3:
        frames = frames[..., None]
    n_frames, height, width = frames.shape[:3]
    if len(boxes) != n_frames or len(classes) != n_frames:
        raise ValueError(f"boxes and classes need one entry per frame ({n_frames}), got "
                         f"{len(boxes)} and {len(classes)}")
    flow = _farneback(frames[..., 0] if frames.shape[-1] == 1 else frames) if flow is None \
        else np.asarray(flow, dtype=np.float32)
    magnitude = torch.from_numpy(np.linalg.norm(flow, axis=-1))[:, None]        # (T-1, 1, H, W)
    video = torch.from_numpy(frames).permute(0, 3, 1, 2)                         # (T, C, H, W)
    crops, futures, flows, cls, geom, index = [], [], [], [], [], []
    for t in range(n_frames - 1):  # one frame's detections at a time; crops differ in size
        for box, c in zip(np.asarray(boxes[t], float).reshape(-1, 4), np.asarray(classes[t]).ravel()):
            crops.append(_crop(video[t], box, crop_size))
            futures.append(_crop(video[t + 1], box, crop_size))
            flows.append(_crop(magnitude[t], box, crop_size)[0])
            x0, y0, x1, y1 = box
            geom.append(((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width,
                         (y1 - y0) / height))
            cls.append(int(c))
            index.append(t)
    if not crops:
        raise ValueError("no objects in frames 0 .. n_frames - 2")
    flows = torch.stack(flows).numpy()
    if flow_scale is None:
        flow_scale = float(max(np.percentile(flows, 99), 1e-6))
    X = pack_objects(torch.stack(crops).numpy(), torch.stack(futures).numpy(),
                     np.clip(flows / flow_scale, 0, 1), np.asarray(cls), np.asarray(geom),
                     n_classes)
    return ObjectSamples(X, np.asarray(index), flow_scale)


def detect_moving_objects(frames, background=None, threshold=0.1, min_area=4, pad=1):
    """Boxes of what differs from a static background: a stand-in for an object detector.

    The paper takes boxes and classes from YOLOv3; a user without a detector can take the
    connected regions where a frame differs from the background by more than ``threshold``
    (``scipy.ndimage.label``, 8-connected), each one object of class 0. This finds moving
    people and vehicles in a fixed-camera scene such as UCSD Ped2, merges objects that touch,
    and knows no classes, so the class aspect ``"C"`` learns nothing from it (leave it out:
    ``aspects=("F", "O", "location")``).

    Parameters
    ----------
    frames : array-like of shape (n_frames, H, W), values in [0, 1]
    background : array-like of shape (H, W) or None, default=None
        The empty scene; None takes the per-pixel median of ``frames`` (pass the training
        videos' median for test videos).
    threshold : float, default=0.1
        Absolute difference from the background that counts as foreground.
    min_area : int, default=4
        Regions of fewer pixels are noise.
    pad : int, default=1
        Pixels added around each region's extent.

    Returns
    -------
    boxes : list of n_frames arrays (k_t, 4)
        ``(x0, y0, x1, y1)`` in pixels, for :func:`make_object_samples`.
    classes : list of n_frames int arrays (k_t,), all 0

    See Also
    --------
    make_object_samples : Object rows from frames and these boxes.

    Examples
    --------
    >>> import numpy as np
    >>> from sknovelty.mmp_ams import detect_moving_objects
    >>> frames = np.zeros((3, 20, 20)); frames[1, 5:9, 10:12] = 1.0
    >>> boxes, classes = detect_moving_objects(frames, background=np.zeros((20, 20)))
    >>> [len(b) for b in boxes], boxes[1].tolist()
    ([0, 1, 0], [[9.0, 4.0, 13.0, 10.0]])
    """
    from scipy import ndimage

    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3:
        raise ValueError(f"frames must be (n_frames, H, W), got shape {frames.shape}")
    background = np.median(frames, axis=0) if background is None else np.asarray(background)
    if background.shape != frames.shape[1:]:
        raise ValueError(f"background has shape {background.shape}, frames {frames.shape[1:]}")
    height, width = frames.shape[1:]
    boxes, classes = [], []
    for frame in frames:
        regions, n = ndimage.label(np.abs(frame - background) > threshold, np.ones((3, 3)))
        sizes = ndimage.sum_labels(np.ones_like(frame), regions, np.arange(1, n + 1))
        found = [(max(sl[1].start - pad, 0), max(sl[0].start - pad, 0),
                  min(sl[1].stop + pad, width), min(sl[0].stop + pad, height))
                 for sl, area in zip(ndimage.find_objects(regions), sizes) if area >= min_area]
        boxes.append(np.asarray(found, dtype=np.float32).reshape(-1, 4))
        classes.append(np.zeros(len(found), dtype=int))
    return boxes, classes


def object_to_frame_scores(scores, frame_index, n_frames):
    """A frame's normality score is that of its most novel object (sec. 4.4).

    Parameters
    ----------
    scores : array-like of shape (n_objects,)
        ``score_samples`` of the object rows (higher = more normal).
    frame_index : array-like of int of shape (n_objects,)
        The frame of each object (``ObjectSamples.frame_index``).
    n_frames : int

    Returns
    -------
    ndarray of shape (n_frames,)
        The lowest object score per frame; frames without objects get the highest object
        score of the video (nothing there to be novel).

    See Also
    --------
    sknovelty.video.frame_auroc : Frame-level AUROC over several videos.
    """
    scores, frame_index = np.asarray(scores, float), np.asarray(frame_index)
    out = np.full(n_frames, np.inf)
    np.minimum.at(out, frame_index, scores)
    out[np.isinf(out)] = scores.max() if len(scores) else 0.0
    return out


# ----------------------------------------------------------------------------- networks
class ClassPredictor(nn.Module):
    """f_C(X_MP, h): the masked crop's code and a state -> class logits (a softmax in the loss).

    ``(B, D), (B, n, S) -> (B, n, n_classes)``; the paper's f_C is convolutions, pooling and 4
    dense layers; here the crop encoder is shared in form with f_F's and the head has 2.
    """

    def __init__(self, crop_shape, channels, latent_dim, state_dim, n_classes):
        super().__init__()
        self.encoder = Encoder(crop_shape, channels, latent_dim)
        self.head = nn.Sequential(nn.Linear(latent_dim + state_dim, latent_dim), nn.ReLU(),
                                  nn.Linear(latent_dim, n_classes))

    def forward(self, code, states):
        b, n = states.shape[:2]
        return self.head(torch.cat([code.unsqueeze(1).expand(b, n, code.shape[1]), states], 2))


class LocationModule(nn.Module):
    """f_Theta (sec. 4.3): class -> mean and log spread of each box coordinate (4 Gaussians)."""

    def __init__(self, n_classes, width=64, n_layers=3):
        super().__init__()
        layers, a = [], n_classes
        for _ in range(n_layers - 1):
            layers += [nn.Linear(a, width), nn.ReLU()]
            a = width
        self.net = nn.Sequential(*layers, nn.Linear(a, 8))

    def forward(self, cls):
        mean, log_std = self.net(cls).chunk(2, dim=1)
        return mean, log_std.clamp(-7.0, 5.0)


class AMSOutput(NamedTuple):
    parts: dict          # the unpacked object rows
    predictions: dict    # aspect -> (B, n, ...) predictions
    location: tuple      # (mean, log_std) of the box coordinates, or None


class MultiAspectModule(nn.Module):
    """P, R and one prediction network per aspect; the location module (sec. 4.1-4.3)."""

    def __init__(self, crop_shape, n_classes, aspects, mask, n_predictions, channels, latent_dim,
                 state_dim, state_layers):
        super().__init__()
        self.crop_shape, self.n_classes, self.n_predictions = tuple(crop_shape), n_classes, n_predictions
        self.register_buffer("mask", mask)
        self.first_state = Encoder(crop_shape, channels, state_dim)            # P
        self.state_generator = StateGenerator(state_dim, state_layers)        # R
        flow_shape = (1, *crop_shape[1:])
        nets = {"F": lambda: StateConditionalNetwork(crop_shape, channels, latent_dim, state_dim),
                "O": lambda: StateConditionalNetwork(crop_shape, channels, latent_dim, state_dim,
                                                     out_shape=flow_shape),
                "C": lambda: ClassPredictor(crop_shape, channels, latent_dim, state_dim, n_classes)}
        self.predictors = nn.ModuleDict({a: nets[a]() for a in aspects if a in nets})
        self.location = LocationModule(n_classes) if "location" in aspects else None

    def forward(self, x):
        parts = unpack_objects(x, self.crop_shape, self.n_classes)
        x_m = parts["crop"] * self.mask                                         # X_MP
        h, states = self.first_state(x_m), []
        for _ in range(self.n_predictions):  # the recurrence runs over predictors, not samples
            h = self.state_generator(h)
            states.append(h)
        states = torch.stack(states, dim=1)
        predictions = {a: net(net.encoder(x_m), states) for a, net in self.predictors.items()}
        location = self.location(parts["cls"]) if self.location is not None else None
        return AMSOutput(parts, predictions, location)


# ----------------------------------------------------------------------------- losses
class MultiAspectLoss(nn.Module):
    """Eq. 7 and 8: ``sum_A (L_NN,A + lam L_NP,A) + L_Theta``.

    Distances: mean absolute error for the future crop and the flow (L1, sec. 4.2), the
    cross-entropy of each predicted class distribution for the class. Each aspect keeps its
    own participation (an :class:`~sknovelty.mmp.MMPLoss`). ``L_Theta`` is the Gaussian
    negative log-likelihood of the box coordinates, ``log s + (x - m)^2 / (2 s^2)`` (eq. 8
    prints ``1/2 log s``; the factor only reweights the spread, we use the exact NLL).
    """

    def __init__(self, aspects, n_predictions, lam=0.1, delta=0.05):
        super().__init__()
        self.aspects = tuple(aspects)
        self.nn_losses = nn.ModuleDict({a: MMPLoss(n_predictions, "nn_np", lam, delta, "l1")
                                        for a in self.aspects if a != "location"})

    @staticmethod
    def _errors(aspect, out):
        pred = out.predictions[aspect]
        if aspect == "C":
            target = out.parts["cls"].argmax(1)
            b, n = pred.shape[:2]
            return F.cross_entropy(pred.flatten(0, 1), target.repeat_interleave(n),
                                   reduction="none").view(b, n)
        target = out.parts["future"] if aspect == "F" else out.parts["flow"]
        return (pred - target.unsqueeze(1)).abs().flatten(2).mean(2)

    @staticmethod
    def _location_nll(out):
        mean, log_std = out.location
        z = (out.parts["box"] - mean) * torch.exp(-log_std)
        return (log_std + 0.5 * z.square()).sum(1)

    def per_sample(self, out, x):
        terms = {a: self._errors(a, out).min(1).values for a in self.nn_losses}
        if "location" in self.aspects:
            terms["location"] = self._location_nll(out)
        return terms

    def forward(self, out, x):
        loss = sum(self.nn_losses[a].from_errors(self._errors(a, out)) for a in self.nn_losses)
        if "location" in self.aspects:
            loss = loss + self._location_nll(out).mean()
        return loss

    def end_epoch(self):
        for loss in self.nn_losses.values():
            loss.end_epoch()


class AspectParticipation(Callback):
    """Close each epoch of every aspect's participation count; record them in the history."""

    def on_train_begin(self, net, **kwargs):
        for loss in net.criterion_.nn_losses.values():
            loss.epoch = 0

    def on_epoch_end(self, net, **kwargs):
        net.criterion_.end_epoch()
        net.history.record("participation", {a: loss.participation.tolist()
                                             for a, loss in net.criterion_.nn_losses.items()})


# ----------------------------------------------------------------------------- estimator
class MultiAspectDetector(BaseDeepDetector):
    """MMP-AMS: masked multi-prediction over the aspects of video objects (sec. 4).

    ``X`` holds one flat row per object (:func:`pack_objects`, built from frames, boxes and
    classes by :func:`make_object_samples`). A fixed mask hides ``mask_ratio`` of the cells of
    a ``mask_grid`` x ``mask_grid`` grid over the crop at t; from what is left, shared states
    (``h_0 = P(X_MP)``, ``h_k = R(h_{k-1})``) drive ``n_predictions`` predictions of each aspect
    in ``aspects``: ``"F"`` the crop at t+1, ``"O"`` the flow magnitude, ``"C"`` the class; and
    ``"location"`` scores the box under per-class Gaussians. ``score_components`` gives each
    aspect's raw error (the nearest prediction's for F, O, C; the NLL for the location);
    ``score_samples`` is minus ``sum_A w_A (e_A - mu_A) / sigma_A`` with ``mu_A``, ``sigma_A``
    from held-out normal objects (eq. 9-10). Frame scores: :func:`object_to_frame_scores`.

    Parameters
    ----------
    crop_shape : tuple (C, s, s), default=(1, 32, 32)
        Shape of an object crop in the rows.
    n_classes : int, default=2
        Number of object classes in the rows.
    aspects : tuple of str, default=("F", "O", "C", "location")
        The aspects trained and scored (Table 5 adds them one by one).
    aspect_weights : dict or None, default=None
        ``{aspect: w_A}``; None weighs every aspect 1 (the paper's Ped2 setting), and so does
        the dict for the aspects it leaves out. Keys must be among ``aspects``; weights finite
        numbers >= 0, at least one aspect's positive (``fit`` raises ``ValueError`` otherwise).
    n_predictions : int, default=3
        Predictions per aspect (paper: 3, Fig. 5).
    lam : float, default=0.1
    delta : float, default=0.05
        Non-participation weight and share, as in :class:`~sknovelty.MaskedMultiPredictionDetector`.
    mask_ratio : float in [0, 1), default=0.5
    mask_grid : int, default=4
        The crop is cut into ``mask_grid`` x ``mask_grid`` cells, ``mask_ratio`` of them hidden
        (paper: 50% of a 4 x 4 grid).
    channels : tuple of int, default=(32, 64, 128)
    latent_dim : int, default=64
    state_dim : int, default=128
    state_layers : int, default=7
    epochs : int, default=60
    batch_size : int, default=64
    learning_rate : float, default=1e-3
    validation_fraction, contamination, device, random_state, verbose, callbacks, n_jobs,
    score_batch_size, precision
        See :class:`~sknovelty.base.BaseDeepDetector`.

    Attributes
    ----------
    participation_ : dict
        Per aspect, each predictor's share of nearest-neighbour wins in the last epoch.
    normalization_ : dict
        ``{aspect: (mean, std)}`` of the raw errors on held-out normal objects.
    net_, offset_, input_range_, sample_shape_, device_, n_features_in_
        As in :class:`~sknovelty.base.BaseDeepDetector`.

    Notes
    -----
    No public code exists. Departures, for a CPU budget and small crops: one autoencoder per
    image aspect instead of two stacked ones, smaller widths, crops of 32 pixels (paper: 64),
    60 epochs (paper: 150); the object detector (YOLOv3) and the flow network (FlowNet2) are
    the user's: pass their boxes and flow, or let :func:`make_object_samples` use OpenCV's
    Farneback flow. The paper's optional window-level non-maximum suppression is not done.

    Examples
    --------
    >>> import numpy as np
    >>> from sknovelty.mmp_ams import MultiAspectDetector, pack_objects
    >>> rng = np.random.RandomState(0)
    >>> crops = rng.uniform(size=(80, 1, 16, 16))
    >>> X = pack_objects(crops, crops, crops[:, 0], rng.randint(2, size=80),
    ...                  rng.uniform(size=(80, 4)), n_classes=2)
    >>> det = MultiAspectDetector(crop_shape=(1, 16, 16), channels=(8, 16), epochs=2,
    ...                           random_state=0).fit(X)
    >>> sorted(det.score_components(X[:3]))
    ['C', 'F', 'O', 'location']
    """

    _sample_ranks = (1,)
    #: a row is not any vector but one object in pack_objects' layout, fixed by crop_shape
    #: and n_classes (sknovelty.registry reads the kind of samples from here)
    _input_kinds = ("objects",)
    _normalization = "zscore"

    def __init__(self, crop_shape=(1, 32, 32), n_classes=2, aspects=ASPECTS, aspect_weights=None,
                 n_predictions=3, lam=0.1, delta=0.05, mask_ratio=0.5, mask_grid=4,
                 channels=(32, 64, 128), latent_dim=64, state_dim=128, state_layers=7, *,
                 epochs=60, batch_size=64, learning_rate=1e-3, validation_fraction=0.1,
                 contamination=0.1, device="auto", random_state=None, verbose=0, callbacks=None,
                 n_jobs=None, score_batch_size="auto", precision="float32"):
        self.crop_shape = crop_shape
        self.n_classes = n_classes
        self.aspects = aspects
        self.aspect_weights = aspect_weights
        self.n_predictions = n_predictions
        self.lam = lam
        self.delta = delta
        self.mask_ratio = mask_ratio
        self.mask_grid = mask_grid
        self.channels = channels
        self.latent_dim = latent_dim
        self.state_dim = state_dim
        self.state_layers = state_layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.contamination = contamination
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.n_jobs = n_jobs
        self.score_batch_size = score_batch_size
        self.precision = precision

    # the base's image_shape does not apply: rows are objects
    image_shape = None
    _omitted_common_parameters = ("image_shape",)

    _parameter_constraints = {
        **{k: v for k, v in BaseDeepDetector._parameter_constraints.items() if k != "image_shape"},
        "crop_shape": [tuple, list],
        "n_classes": [Interval(numbers.Integral, 1, None, closed="left")],
        "aspects": [tuple, list],
        "aspect_weights": [None, dict],
        "n_predictions": [Interval(numbers.Integral, 1, None, closed="left")],
        "lam": [Interval(numbers.Real, 0, None, closed="left")],
        "delta": [Interval(numbers.Real, 0, 1, closed="both")],
        "mask_ratio": [Interval(numbers.Real, 0, 1, closed="left")],
        "mask_grid": [Interval(numbers.Integral, 1, None, closed="left")],
        "channels": [tuple, list],
        "latent_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "state_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "state_layers": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    @property
    def _novelty_terms(self):
        return tuple(a for a in ASPECTS if a in self.aspects)

    def _check_hyperparameters(self):
        check_positive_ints("channels", self.channels)
        check_positive_ints("crop_shape", self.crop_shape)
        if len(self.crop_shape) != 3 or self.crop_shape[1] != self.crop_shape[2]:
            raise ValueError(f"crop_shape must be (C, s, s), got {self.crop_shape!r}")
        unknown = set(self.aspects) - set(ASPECTS)
        if unknown or not self.aspects:
            raise ValueError(f"aspects must be a non-empty subset of {ASPECTS}, got {self.aspects!r}")
        weights = self.aspect_weights or {}
        extra = set(weights) - set(self.aspects)
        if extra:
            names = ", ".join(sorted(map(repr, extra)))
            raise ValueError(f"aspect_weights names aspects not in aspects: {names} "
                             f"(aspects: {tuple(self.aspects)!r})")
        for aspect, weight in weights.items():
            # a NaN or infinite weight makes every score NaN (inf * 0 where an error is
            # exactly its mean), a negative one rewards that aspect's errors
            if (not isinstance(weight, numbers.Real) or isinstance(weight, bool)
                    or not math.isfinite(weight) or weight < 0):
                raise ValueError(f"aspect_weights[{aspect!r}] must be a finite number >= 0, "
                                 f"got {weight!r}")
        if not any(weights.get(a, 1.0) > 0 for a in self._novelty_terms):
            raise ValueError("aspect_weights must give at least one aspect a positive weight "
                             f"(aspects missing from it weigh 1), got {weights!r}")

    def _build_module(self, sample_shape, input_range):
        unpack_objects(np.zeros((1, *sample_shape)), tuple(self.crop_shape), self.n_classes)
        generator = torch.Generator().manual_seed(int(torch.initial_seed() % (2 ** 31)))
        s = self.crop_shape[1]
        mask = patch_mask(tuple(self.crop_shape), math.ceil(s / self.mask_grid), self.mask_ratio,
                          generator)
        return MultiAspectModule(tuple(self.crop_shape), self.n_classes, self._novelty_terms, mask,
                                 self.n_predictions, tuple(self.channels), self.latent_dim,
                                 self.state_dim, self.state_layers)

    def _build_criterion(self, sample_shape):
        return MultiAspectLoss(self._novelty_terms, self.n_predictions, self.lam, self.delta)

    def _method_callbacks(self):
        return [("participation", AspectParticipation())]

    def _finalize_fit(self):
        self.participation_ = {a: loss.participation.cpu().numpy().copy()
                               for a, loss in self.net_.criterion_.nn_losses.items()}

    def _combine(self, terms):
        """Eq. 9-10: minus the weighted sum of the z-scored aspect errors."""
        weights = self.aspect_weights or {}
        novelty = sum(weights.get(a, 1.0) * self._normalized(a, terms[a]) for a in self._novelty_terms)
        return -novelty

    _fitted_attributes = (*BaseDeepDetector._fitted_attributes, "participation_")

    def _restore(self, fitted, module_state, criterion_state, history):
        fitted = {**fitted, "participation_": {a: np.asarray(v, dtype=np.float32)
                                               for a, v in fitted["participation_"].items()}}
        super()._restore(fitted, module_state, criterion_state, history)

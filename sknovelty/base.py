"""The base estimator every sknovelty deep detector derives from.

:class:`BaseDeepDetector` is the skeleton of ``fit`` and ``score_samples``: it validates the
input, holds out normal rows, builds the method's network and trains it (in
:mod:`sknovelty.engine`), then fixes ``offset_`` and the reference scores of p-values on the
held-out rows, and the score's normalisation on the held-out rows too (or the training rows,
``_normalize_on_training_rows``). The rest lives by concern in mixins and helpers:
devices, threads, precision and seeding (``sknovelty._device``), input validation
(``sknovelty._validation``), scoring in chunks, streaming and maps (``sknovelty._scoring``),
the simple-input probe (``sknovelty._complexity``), model files and old pickles
(``sknovelty._restore``), thresholds and p-values (:class:`sknovelty.thresholds.ThresholdMixin`).

A method is a subclass that writes its hyperparameters in ``__init__`` (stored as given,
scikit-learn's rule; every common parameter of ``BaseDeepDetector._parameter_constraints``
included, unless listed in ``_omitted_common_parameters``) and supplies:

Required
    ``_build_module(sample_shape, input_range)``
        Its network(s) as one ``nn.Module`` for samples of ``sample_shape`` whose training
        values span ``input_range = (min, max)``. Example (LSA):
        ``return LSAModule(sample_shape, self.latent_dim, ...)``.
    ``_build_criterion(sample_shape)``
        An ``nn.Module`` following :class:`~sknovelty.engine.DetectorCriterion`: ``forward(
        output, x)`` is the training loss, ``per_sample(output, x)`` the paper's raw novelty
        terms per sample (a dict of 1-D tensors, higher = more novel). Example:
        ``return LSALoss(self.lam)``.

Optional (class attributes)
    ``_sample_ranks``
        Per-sample ranks accepted: 1 vectors, 3 images, 4 clips. Example: ``(1, 3)``.
    ``_novelty_terms``
        The terms the default ``_combine`` adds up after normalisation (and ``score_maps``
        maps). Example: ``("rec", "llk")``.
    ``_normalization``
        ``"minmax"`` or ``"zscore"``, with constants from held-out normal rows (see
        ``_normalize_on_training_rows``).
    ``_net_class``
        The engine net: ``DetectorNet`` (one player), ``AdversarialNet`` (the module has an
        ``adversary``, the criterion an ``adversary_loss``) or ``TwoStageNet`` (the module has
        ``stages`` and ``stage``); see the Protocols in :mod:`sknovelty.engine`. A property
        when it depends on a hyperparameter (LTG: ``noise="none"`` has no adversary).
    ``_score_maps``
        True when the criterion has ``per_pixel(output, x)``: ``score_maps`` exists then.
    ``_fitted_attributes``
        Fitted JSON attributes that ``save`` stores. Example (MMP):
        ``(*BaseDeepDetector._fitted_attributes, "participation_")``.
    ``_former_defaults``
        ``{parameter: value}`` that reproduces models saved or pickled before a parameter
        existed. Example (LSA): ``{"normalize_on": "held_out"}``.
    ``_omitted_common_parameters``
        Common parameters the method does not take. Example (MMP-AMS): ``("image_shape",)``.

Optional (hooks)
    ``_check_hyperparameters()``
        Checks ``_parameter_constraints`` cannot express (ranges and options go there).
        Examples: a non-empty tuple of positive ints (``check_positive_ints("channels",
        self.channels)``); a rule across parameters (MMP-AMS: ``aspect_weights`` names only
        entries of ``aspects``).
    ``_net_kwargs()``
        Keyword arguments of the engine net. Example: ``{"optimizer__betas": (0.5, 0.9)}``.
    ``_method_callbacks()``
        ``(name, callback)`` pairs training needs. Example:
        ``[("noise_monitor", NoiseMonitor())]``.
    ``_prepare_training(module, X_train)``
        Set-up from the training rows before training (Deep SVDD: its centre).
    ``_finalize_fit()``
        Fitted attributes to set once training has ended (MMP: ``participation_``).
    ``_normalize_on_training_rows()``
        True to take the normalisation constants from the training rows (LSA's
        ``normalize_on="train"``).
    ``_combine(terms)``
        The normality score (higher = more normal; ``score_samples``, and at fit ``offset_``
        and the reference scores) from the raw terms, a dict of float64 arrays: normalise
        each with ``self._normalized(name, values)``. Default: minus the sum of the
        normalised ``_novelty_terms``. Example (ITAE): minus ``rec + lambda_l * nll``, normalised.
    ``_restore(fitted, module_state, criterion_state, history)``
        Rebuilds the model in ``load``; override to turn the JSON values of fitted
        attributes added to ``_fitted_attributes`` back into arrays, then call ``super()``
        (MMP: ``participation_``).

Detectors defined in a module of the package register themselves by class name
(``__init_subclass__``), so that ``sknovelty.load`` finds them without importing anything
named in a file; ``save`` refuses a subclass defined elsewhere.
"""

import copy
import math
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from skorch.helper import predefined_split

from . import io
from ._complexity import ComplexityProbeMixin
from ._device import c_ordered, resolve_device, seeded_build, torch_threads
from ._restore import RestoreMixin
from ._scoring import ScoringMixin
from ._validation import (SampleValidationMixin, check_score_spread, normal_rows,
                          unchanged_on_failure, warn_on_tiny_scale)
from .engine import (BatchIterator, DetectorNet, DivergenceGuard, EpochProgressBar, TensorData,
                     TrainingDivergedError, exact_cudnn)
from .nn.random import fit_generators
from .thresholds import ThresholdMixin

__all__ = ["BaseDeepDetector", "TrainingDivergedError"]


#: Training data up to this many bytes is moved to the device once, before the first epoch,
#: so that no host-to-device copy happens inside the training loop.
DEVICE_DATA_LIMIT = 1 << 30

#: Adam's fused kernel (one pass over all parameters) runs on CPU from torch 2.4 on.
_FUSED_ADAM = ({"optimizer__fused": True}
               if tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4) else {})


class BaseDeepDetector(ThresholdMixin, ScoringMixin, ComplexityProbeMixin, SampleValidationMixin,
                       RestoreMixin, io.ModelFileMixin, OutlierMixin, BaseEstimator):
    """Base class of the deep novelty detectors (not used directly).

    Subclasses list all their parameters in ``__init__`` (scikit-learn convention); the
    common ones are documented here and repeated in each subclass.

    Parameters
    ----------
    epochs : int
        Number of passes over the training data.
    batch_size : int or "auto"
        Mini-batch size for training. ``"auto"`` (the default of LSA, the AE, OLED and the
        CAE): 64, or fewer when the training rows would make fewer than 6 batches of 64 (then
        ``n_train // 6``, at least 8), so that small training sets still get as many
        optimizer steps per epoch as MNIST-5k's ~360 rows do; on video clips ``(n, C, T, H,
        W)``, 8 (at 64, a few hundred clips left the 3-D AE, LSA and LTG undertrained).
        ``batch_size_`` holds the size used.
    score_batch_size : int or "auto"
        Rows per forward pass when scoring (and when fixing the normalisation at the end of
        ``fit``); memory stays bounded by it, whatever the number of samples scored. X is
        also validated and converted in blocks of about 16,384 rows, so a ``numpy.memmap``
        (or any array-like that slices by rows) is streamed, never loaded whole. ``"auto"``:
        up to 1024 rows on CUDA and 256 on the CPU, fewer for large samples (at most the
        input values of 1024 / 256 MNIST images per chunk), never fewer than ``batch_size``.
        The chunk is fixed whatever the number of rows scored (the last is zero-padded), so
        scoring a handful of rows costs one whole chunk. A sample's score does not depend on
        the chunk size beyond float32 rounding (~1e-7 relative: some kernels block rows
        differently).
    precision : "float32" or "bfloat16"
        Precision of the networks' forward passes when scoring (training stays float32).
        ``"bfloat16"`` runs them under ``torch.autocast`` (the novelty terms are still
        computed in float32 from the outputs): faster on GPUs and on CPUs with AVX512-BF16
        or AMX; on other CPUs it brings nothing, so scoring stays float32 and ``fit`` warns.
        ``precision_`` holds the precision in use.
    learning_rate : float
        Adam learning rate.
    validation_fraction : float in [0, 1)
        Share of the (normal) training rows held out: the normalisation constants of the score
        (except LSA's, see its ``normalize_on``) and ``offset_`` are computed on it, and skorch
        reports ``valid_loss`` on it (so ``EarlyStopping`` works). With 0 they are computed on
        the training rows.
    contamination : float in (0, 0.5]
        Expected share of outliers: ``offset_`` is the ``100 * contamination`` percentile of the
        held-out scores.
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    random_state : int, RandomState instance or None
        Seeds weight initialisation, the validation split and the batch order. Fitting twice
        with the same integer on CPU gives identical scores.
    verbose : int
        0 silent; 1 a progress bar over the epochs with the last epoch's losses
        (:class:`~sknovelty.engine.EpochProgressBar`, on standard error); 2 skorch's table,
        one line per epoch.
    image_shape : tuple (C, H, W) or None
        Interpret flat rows ``(n, C*H*W)`` as images, so images pass through scikit-learn
        pipelines as 2-D arrays.
    callbacks : list of skorch callbacks or None
        Extra skorch callbacks (e.g. ``EarlyStopping``, ``ProgressBar``,
        :class:`~sknovelty.engine.EveryOptimizerLRScheduler`: skorch's ``LRScheduler`` for
        every player and stage), copied at every fit.
    n_jobs : int or None
        Number of torch intra-op (CPU) threads during ``fit`` and scoring; the caller's
        setting is restored afterwards. ``None`` uses torch's current setting, ``-1`` all
        CPUs. Training results depend on the thread count (float32 kernels split their sums
        differently, and the differences grow over training), so set it to the same value
        wherever results must agree: e.g. ``n_jobs=1`` makes a ``GridSearchCV(n_jobs=1)``
        and a ``GridSearchCV(n_jobs=2)`` (whose workers run one thread each) find the same
        scores. See the user guide's reproducibility section.

    Attributes
    ----------
    batch_size_ : int
        The training batch size used (``batch_size`` resolved).
    simple_input_auroc_ : float
        For images and clips: the AUROC with which the fitted model tells the held-out
        normal rows from their flat versions (each replaced by its per-channel mean); NaN
        for vectors. ``fit`` warns (:class:`~sknovelty.exceptions.SimpleInputWarning`) when
        it is clearly below 0.5 (:meth:`_simple_input_threshold`): the flat inputs score as
        more normal than normal data, so novel inputs simpler than the training data may go
        unnoticed.
    complexity_correlation_ : float
        For images and clips: the Spearman correlation, over the held-out normal rows,
        between the novelty score and the input's zlib code length
        (:func:`~sknovelty.metrics.code_length`); NaN for vectors.
    """

    _parameter_constraints: dict = {
        "epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "contamination": [Interval(numbers.Real, 0, 0.5, closed="right")],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "image_shape": [None, tuple, list],
        "callbacks": [None, list],
        "n_jobs": [None, Interval(numbers.Integral, None, -1, closed="right"),
                   Interval(numbers.Integral, 1, None, closed="left")],
        "score_batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None,
                                                            closed="left")],
        "precision": [StrOptions({"float32", "bfloat16"})],
    }

    #: per-sample ranks the method supports: 1 vectors, 3 images, 4 clips.
    _sample_ranks = (1, 3)
    #: names of the per-sample terms the novelty score adds up (after normalisation).
    _novelty_terms = ("rec",)
    #: the skorch net class that trains the module (``AdversarialNet`` for two players).
    _net_class = DetectorNet

    #: how ``normalization_`` scales each term: ``"minmax"`` (t - min) / (max - min) or
    #: ``"zscore"`` (t - mean) / std, with the constants from the held-out rows.
    _normalization = "minmax"
    #: common parameters (keys of ``_parameter_constraints`` above) the method does not take
    _omitted_common_parameters = ()
    # save(path) and load(path, device=None) come from io.ModelFileMixin
    _file_kind = "deep"

    # ------------------------------------------------------------------ method hooks
    def _build_module(self, sample_shape, input_range):
        """The method's network(s) as one ``nn.Module`` (required: see the module docstring)."""
        raise NotImplementedError

    def _build_criterion(self, sample_shape):
        """The method's loss, a ``DetectorCriterion`` (required: see the module docstring)."""
        raise NotImplementedError

    def _check_hyperparameters(self):
        """Validate method-specific parameters that ``_parameter_constraints`` cannot express."""

    def _net_kwargs(self):
        """Keyword arguments of the skorch net that override or extend the defaults
        (optimizer settings, schedules, ``max_epochs``)."""
        return {}

    def _method_callbacks(self):
        """``(name, callback)`` pairs the method's training needs (before the user's)."""
        return []

    def _finalize_fit(self):
        """Set method-specific fitted attributes once training has ended."""

    def _prepare_training(self, module, X_train):
        """Set up, from the training data, what training needs; called once per ``fit``.

        ``module`` is the freshly built module, still on the CPU (skorch moves it to
        ``device_`` when training starts); ``X_train`` holds the training rows (not the
        held-out ones) as a float32 tensor, on ``device_`` when they fit there, else on the
        CPU. It runs just before training, as training does: draws through
        :mod:`sknovelty.nn.random` come from the fit's seeded generators, and cuDNN is exact
        (no TF32). For what depends on the training data, e.g. Deep SVDD's centre fixed from
        an initial forward pass: move ``module`` to ``device_`` and the rows to it batch by
        batch. Default: nothing.
        """

    def _normalize_on_training_rows(self):
        """Whether the normalisation constants of the novelty terms come from the training
        rows rather than the held-out ones (``offset_`` and the p-value reference always come
        from the held-out rows)."""
        return False

    def _combine(self, terms):
        """``score_samples`` from the raw novelty terms (name -> float64 values per sample, as
        ``_raw_components`` gives them): minus the sum of the ``_novelty_terms``, each
        normalised by ``_normalized`` (higher = more normal)."""
        novelty = np.zeros(len(next(iter(terms.values()))))
        for name in self._novelty_terms:
            novelty += self._normalized(name, terms[name])
        return -novelty

    # ------------------------------------------------------------------ fitting
    def _make_net(self, module, *, train_split=None, generator=None):
        kwargs = dict(
            module=module, criterion=self._build_criterion(self.sample_shape_),
            optimizer=torch.optim.Adam, lr=self.learning_rate, **_FUSED_ADAM,
            max_epochs=self.epochs, batch_size=self.batch_size_,
            iterator_train=BatchIterator, iterator_train__shuffle=True,
            iterator_train__generator=generator, iterator_valid=BatchIterator,
            train_split=train_split,
            callbacks=[("divergence_guard", DivergenceGuard()), *self._method_callbacks()]
            + ([("progress_bar", EpochProgressBar(type(self).__name__))] if self.verbose == 1 else [])
            + copy.deepcopy(list(self.callbacks or [])),
            device=self.device_, verbose=int(self.verbose >= 2),
        )
        return self._net_class(**{**kwargs, **self._net_kwargs()})

    @unchanged_on_failure
    def fit(self, X, y=None):
        """Train on normal data.

        A fit that raises leaves the estimator exactly as it was before the call.

        Parameters
        ----------
        X : array-like of shape (n, d), (n, C, H, W), (n, C, T, H, W) or (n, C*H*W) with
            ``image_shape``
            Normal training samples.
        y : array-like of shape (n,) with values in {+1, -1}, optional
            When given, only the rows labelled +1 (normal) are used, so that
            ``cross_val_score(det, X, y, scoring="roc_auc")`` on labelled data trains on the
            normal rows of each fold. Labels other than +1/-1 are ignored with a warning.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For invalid input or hyperparameters.
        TrainingDivergedError
            When the training loss becomes NaN or infinite, or the fitted model gives
            (nearly) one score to every held-out row (:func:`check_score_spread`).
        KeyboardInterrupt
            On Ctrl-C (SIGINT) during training, with the estimator left as it was.

        See Also
        --------
        score_samples : Normality scores of new samples once fitted.
        calibrate : Replace the held-out reference scores by those of fresh normal rows.
        save : Write the fitted estimator to a model file.
        """
        self._validate_params()
        with torch_threads(self.n_jobs):
            return self._fit(X, y)

    def _fit(self, X, y):
        self._check_hyperparameters()
        X = normal_rows(self._validate_X(X, reset=True), y)
        n = len(X)
        n_val = math.ceil(self.validation_fraction * n) if self.validation_fraction > 0 else 0
        if n - n_val < 2:
            raise ValueError(f"{type(self).__name__} needs at least {2 + (n_val > 0)} normal "
                             f"samples to fit (2 to train, 1 held out); got n_samples = {n}")
        self.device_ = resolve_device(self.device)
        self.precision_ = self._resolve_precision()
        self.batch_size_ = self._resolve_batch_size(n - n_val)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        order = np.random.RandomState(seed).permutation(n)
        to_dev = self.device_ if X.nbytes <= DEVICE_DATA_LIMIT else "cpu"
        self.input_range_ = (float(X[order[n_val:]].min()), float(X[order[n_val:]].max()))
        warn_on_tiny_scale(X, type(self).__name__)
        X_train = torch.from_numpy(c_ordered(X[order[n_val:]])).to(to_dev)
        X_val = torch.from_numpy(c_ordered(X[order[:n_val]])).to(to_dev) if n_val else None
        with seeded_build(seed, self.device_) as continuing:
            module = self._build_module(self.sample_shape_, self.input_range_)
            self.net_ = self._make_net(
                module,
                train_split=predefined_split(TensorData(X_val)) if n_val else None,
                generator=torch.Generator().manual_seed(seed),
            )
            generators = continuing()
        with fit_generators(generators), exact_cudnn():
            self._prepare_training(module, X_train)
            self.net_.fit(TensorData(X_train))
        self.net_.train_split = None  # do not keep (or pickle) the held-out rows
        self.net_.module_.eval()
        self._finalize_fit()
        X_norm = X_train.cpu().numpy() if self._normalize_on_training_rows() and n_val else None
        self._set_reference((X_val if n_val else X_train).cpu().numpy(), held_out=n_val > 0,
                            X_norm=X_norm)
        return self

    def _set_reference(self, X_ref, held_out, X_norm=None):
        """Fix normalisation constants (of every term), ``offset_`` and the reference scores
        of p-values on held-out normal rows (the training rows when ``held_out`` is False).
        With ``X_norm`` the normalisation constants come from those rows instead."""
        terms = self._raw_components(X_ref)
        self._fix_normalization(terms if X_norm is None else self._raw_components(X_norm))
        scores = self._combine(terms)
        check_score_spread(scores, X_ref, type(self).__name__)
        self.offset_ = float(np.percentile(scores, 100 * self.contamination))
        self._set_reference_scores(scores, held_out)
        self._check_complexity(X_ref, terms, scores)

    # ------------------------------------------------------------------ scoring
    def score_samples(self, X):
        """Normality score: minus the normalised novelty score (higher = more normal).

        Parameters
        ----------
        X : array-like of the fitted sample shape, or flat rows with ``image_shape``
            Samples to score.

        Returns
        -------
        ndarray of shape (n,)

        See Also
        --------
        decision_function : The scores shifted by ``offset_``, negative for outliers.
        score_components : The raw novelty terms the score is made of.
        predict_pvalues : Conformal p-values of the scores against the reference scores.
        """
        check_is_fitted(self)
        return self._combine(self._streamed_components(X))

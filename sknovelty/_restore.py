"""Model files and pickles of a deep detector: rebuilding the fitted state, old versions.

:class:`RestoreMixin` rebuilds a deep detector from what :func:`sknovelty.io.load` read from a
model file (``_restore``), and brings estimators pickled by older versions up to date
(``__setstate__``: parameters added since take the value that reproduces the old scores).
``save`` and ``load`` themselves come from :class:`sknovelty.io.ModelFileMixin`.
"""

import warnings

import torch
from skorch.history import History

from . import io
from ._device import resolve_device

__all__ = ["RestoreMixin"]


class RestoreMixin:
    """``_restore`` and ``__setstate__`` of :class:`~sknovelty.base.BaseDeepDetector`, and the
    lists of what a model file holds."""

    #: fitted attributes (JSON-serialisable) that ``save`` stores besides the weights.
    _fitted_attributes = ("n_features_in_", "sample_shape_", "input_range_", "normalization_",
                          "offset_", "device_", "reference_scores_", "reference_held_out_")
    #: fitted attributes ``save`` stores when present (files of older versions lack the
    #: reference scores; ``false_alarm_rate_`` exists after ``set_false_alarm_rate``)
    _optional_fitted_attributes = ("reference_scores_", "reference_held_out_",
                                   "false_alarm_rate_", "batch_size_", "complexity_correlation_",
                                   "simple_input_auroc_", "feature_names_in_")

    #: parameters added with a default other than the old behaviour: ``{name: value that
    #: reproduces models saved or pickled before the parameter existed}``
    _former_defaults = {}

    def _restore(self, fitted, module_state, criterion_state, history):
        """Rebuild the fitted state from what :func:`sknovelty.io.load` read from a file.

        The fitted values are checked first (:func:`sknovelty.io._check_deep_fitted`: finite,
        sorted, consistent, within the size limits); the networks are then built within an
        allocation budget tied to the weights' size, and must have exactly the file's
        tensors (keys, shapes and dtypes) before any is loaded. Raises ``ValueError`` for a
        damaged or edited file.
        """
        fitted = io._check_deep_fitted(self, fitted)
        for name, value in fitted.items():
            setattr(self, name, value)
        if "batch_size_" not in fitted:  # files of older versions: batch_size was an int
            self.batch_size_ = self._resolve_batch_size(None)
        try:
            self.device_ = resolve_device(self.device)
        except ValueError:
            warnings.warn(f"device={self.device!r} is not available here; loading on CPU",
                          UserWarning, stacklevel=3)
            self.device_ = "cpu"
        self.precision_ = self._resolve_precision()

        def build():
            with torch.random.fork_rng(devices=[]), torch.device("cpu"):
                module = self._build_module(self.sample_shape_, self.input_range_)
                return module, self._build_criterion(self.sample_shape_)

        module, criterion = io.build_within_budget(build, (module_state, criterion_state),
                                                   f"networks of {type(self).__name__}")
        io.check_state(module, module_state, "module", type(self).__name__)
        io.check_state(criterion, criterion_state, "criterion", type(self).__name__)
        self._load_state(module, module_state, "module")
        self.net_ = self._make_net(module).initialize()
        self._load_state(self.net_.criterion_, criterion_state, "criterion")
        self.net_.history = History(history)
        self.net_.module_.eval()

    def _load_state(self, target, state, what):
        # load_state_dict raises RuntimeError for missing, unexpected or mis-shaped entries;
        # for a model file that means the file does not match its own parameters
        try:
            target.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"the saved {what} weights do not fit the {what} of "
                             f"{type(self).__name__} built from the saved parameters: {exc}") from exc

    def __setstate__(self, state):
        super().__setstate__(state)
        # pickled before these parameters existed: score as it did then
        self.__dict__.setdefault("precision", "float32")
        self.__dict__.setdefault("score_batch_size", self.batch_size)
        for name, value in self._former_defaults.items():
            self.__dict__.setdefault(name, value)
        if "net_" in self.__dict__:
            # skorch maps CUDA tensors to the CPU when CUDA is missing: follow it.
            self.device_ = str(self.net_.device)
            self.precision_ = self._resolve_precision()

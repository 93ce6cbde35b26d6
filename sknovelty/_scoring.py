"""How a fitted deep detector scores: chunked forward passes, streamed input, maps.

:class:`ScoringMixin` turns validated samples into the paper's novelty terms (in chunks of
``score_batch_size`` rows, at the scoring precision), streams large or memory-mapped inputs
in blocks of rows, normalises terms and builds anomaly maps. ``score_samples`` itself, and
the ``_combine`` hook it calls, are :class:`~sknovelty.base.BaseDeepDetector`'s.
"""

import math
import warnings

import numpy as np
import torch
from sklearn.utils._available_if import available_if
from sklearn.utils.validation import _num_samples, check_is_fitted

from ._device import _float32, resolve_precision, torch_threads
from .engine import exact_cudnn

__all__ = ["STREAM_ROWS", "ScoringMixin", "score_in_row_blocks"]

#: Scoring validates, converts and scores at most about this many rows at a time (a multiple of
#: the scoring chunk), so that a memory-mapped or otherwise sliceable X of any length is
#: streamed rather than loaded whole.
STREAM_ROWS = 16384

#: ``score_batch_size="auto"``: per device type, the most rows per scoring chunk and the input
#: values a chunk may hold (256 and 1024 MNIST images; ``benchmarks/throughput.py``)
AUTO_SCORE_BATCH = {"cuda": (1024, 1024 * 784), "cpu": (256, 256 * 784)}


def score_in_row_blocks(X, block, score_block):
    """``score_block`` (rows -> 1-D scores) applied to ``X`` in blocks of at most ``block``
    rows, each a slice of ``X`` (a memmap is read a block at a time), of equal size (none much
    smaller than the others); ``X`` that is not array-like goes whole to ``score_block``,
    whose validation says why."""
    try:
        n = _num_samples(X)
    except TypeError:
        n = None
    if n is None or n <= block:
        return score_block(X)
    n_blocks = -(-n // block)
    bounds = [n * i // n_blocks for i in range(n_blocks + 1)]
    return np.concatenate([score_block(X[start:stop])
                           for start, stop in zip(bounds[:-1], bounds[1:])])


class ScoringMixin:
    """Scoring of :class:`~sknovelty.base.BaseDeepDetector`: ``score_components``,
    ``score_maps`` and the chunked, streamed computation of the raw novelty terms behind
    ``score_samples``; the terms' normalisation; the batch sizes of training (``batch_size``
    resolved) and scoring (``score_batch_size`` resolved)."""

    def _map_chunks(self, X, fn):
        """Apply ``fn`` (tensor batch -> tensor or dict of tensors) to validated float32 ``X``.

        Every call sees exactly ``score_batch_size`` rows (the last chunk is zero-padded), so a
        sample's result does not depend on what else is processed with it (up to the float32
        rounding of some small matrix kernels, which can differ with a row's position in the
        chunk by ~1e-7); memory stays bounded by the chunk. Results are gathered on the device
        in the dtype ``fn`` returns and copied to the host once.
        """
        device, n, size = self.net_.device, len(X), self._score_batch_size()
        with warnings.catch_warnings():  # a read-only array (a memmap): only read here
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            X = torch.from_numpy(X)
        out = {}
        with torch.inference_mode(), exact_cudnn(), torch_threads(self.n_jobs):
            for start in range(0, n, size):
                xb = X[start:start + size]
                k = len(xb)
                if k < size:
                    xb = torch.cat([xb, xb.new_zeros((size - k, *xb.shape[1:]))])
                result = fn(xb.to(device))
                for name, value in (result.items() if isinstance(result, dict) else [(None, result)]):
                    if name not in out:
                        out[name] = value.new_empty((n, *value.shape[1:]))
                    out[name][start:start + k] = value[:k]
        out = {name: value.cpu().numpy() for name, value in out.items()}
        return out[None] if list(out) == [None] else out

    #: ``batch_size="auto"``: the largest batch, and the fewest batches an epoch should have
    AUTO_BATCH = (64, 6)
    #: ``batch_size="auto"`` on video clips (samples ``(C, T, H, W)``): the batch
    AUTO_CLIP_BATCH = 8

    def _resolve_batch_size(self, n_train):
        """The training batch size: ``batch_size``, or for ``"auto"`` 8 on video clips, else
        64 unless the ``n_train`` rows would make fewer than 6 such batches (then
        ``n_train // 6``, >= 8): :ref:`design-batch-size-auto`."""
        if self.batch_size != "auto":
            return self.batch_size
        if len(getattr(self, "sample_shape_", ())) == 4:
            return self.AUTO_CLIP_BATCH
        largest, min_batches = self.AUTO_BATCH
        if n_train is None or math.ceil(n_train / largest) >= min_batches:
            return largest
        return max(8, n_train // min_batches)

    def _score_batch_size(self):
        if self.score_batch_size != "auto":
            return self.score_batch_size
        rows, values = AUTO_SCORE_BATCH["cuda" if str(self.device_).startswith("cuda") else "cpu"]
        # never below the training batch (it fits in memory with gradients besides)
        # models pickled before batch_size_ existed had an int batch_size
        train_batch = getattr(self, "batch_size_", None) or self._resolve_batch_size(None)
        return max(train_batch, min(rows, values // math.prod(self.sample_shape_)))

    def _resolve_precision(self):
        """The scoring precision on ``device_``: ``"bfloat16"`` only where it is native."""
        return resolve_precision(self, stacklevel=5)

    def _forward(self, xb):
        """The module's forward pass at the scoring precision, its outputs in float32."""
        if self.precision_ == "float32":
            return self.net_.module_(xb)
        with torch.autocast(xb.device.type, dtype=torch.bfloat16):
            return _float32(self.net_.module_(xb))

    def _raw_components(self, X):
        """Per-sample novelty terms (float64) for validated float32 ``X``."""
        criterion = self.net_.criterion_
        out = self._map_chunks(X, lambda xb: {name: value.double() for name, value in
                                              criterion.per_sample(self._forward(xb), xb).items()})
        bad = [name for name, value in out.items() if not np.isfinite(value).all()]
        if bad:
            raise ValueError(f"non-finite {', '.join(bad)} terms: the input is far outside the "
                             "range seen in training (rescale X)")
        return out

    def _fix_normalization(self, terms):
        """Set ``normalization_``, each term's constants (see ``_normalization``), from the
        raw ``terms`` of the rows they are taken on."""
        if self._normalization == "zscore":
            self.normalization_ = {k: (float(v.mean()), float(v.std()))
                                   for k, v in terms.items()}
        else:
            self.normalization_ = {k: (float(v.min()), float(v.max()))
                                   for k, v in terms.items()}

    def _normalized(self, name, values):
        """A raw term scaled by its constants in ``normalization_`` (see ``_normalization``)."""
        a, b = self.normalization_[name]
        if self._normalization == "zscore":
            return (values - a) / (b if b > 0 else 1.0)
        return (values - a) / (b - a if b > a else 1.0)

    def score_components(self, X):
        """The paper's raw novelty terms per sample (higher = more novel).

        Parameters
        ----------
        X : array-like of the fitted sample shape, or flat rows with ``image_shape``
            Samples to score.

        Returns
        -------
        dict of str -> ndarray of shape (n,)
            Each novelty term of the method, by name, before normalisation.

        See Also
        --------
        score_samples : The normality score the normalised terms make.
        score_maps : Where in each sample the terms come from (methods with maps).
        """
        check_is_fitted(self)
        return self._streamed_components(X)

    def _streamed_components(self, X):
        """``_raw_components`` of ``X``, validated and scored in blocks of rows.

        A block is a whole number of scoring chunks, so every sample meets the same chunk
        neighbours as when ``X`` is scored at once: the results are identical.
        """
        try:
            n = _num_samples(X)
        except TypeError:  # not array-like: validation says why
            n = None
        size = self._score_batch_size()
        block = size * max(1, STREAM_ROWS // size)
        if n is None or n <= block:
            return self._raw_components(self._validate_X(X, reset=False))
        parts = [self._raw_components(self._validate_X(X[start:start + block], reset=False))
                 for start in range(0, n, block)]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    #: whether the criterion has ``per_pixel(output, x)``: per-value maps of the novelty terms
    #: (a dict of tensors shaped like x, each summing over a sample to its ``per_sample`` term)
    _score_maps = False

    def _scale(self, name):
        """The divisor of a term in its normalisation (``_normalized`` is affine in it)."""
        a, b = self.normalization_[name]
        if self._normalization == "zscore":
            return b if b > 0 else 1.0
        return b - a if b > a else 1.0

    def _combine_maps(self, maps):
        """The anomaly map: the mapped novelty terms, each divided by its normalisation scale."""
        names = [name for name in self._novelty_terms if name in maps]
        return sum(maps[name] / self._scale(name) for name in names)

    @available_if(lambda self: self._score_maps)
    def score_maps(self, X):
        """Anomaly maps: where in each sample the novelty score comes from (higher = more novel).

        The per-value error the method's score is made of (reconstruction error for LSA, the
        autoencoder and LTG; the error of the nearest prediction for MMP; the error of the
        score named by ``score_type`` for OLED and the context autoencoder; the absolute
        reconstruction error for ITAE), each term divided by its normalisation scale. Except
        for ITAE (whose score takes the maximum over patches), a sample's map sums to its
        spatial novelty terms up to the constant shift of the normalisation, so sorting
        samples by ``score_maps(X).sum`` over the sample axes sorts them as
        ``score_samples`` does when every term has a map. LSA's latent term (LLK) has no
        spatial form and is not in its maps.

        Parameters
        ----------
        X : array-like of the fitted sample shape, or flat rows with ``image_shape``
            Samples to map.

        Returns
        -------
        ndarray of float32, of the shape of ``X``
            For clips ``(n, C, T, H, W)`` a map per frame; for vectors, per feature.

        See Also
        --------
        score_samples : The scores the maps explain.
        sknovelty.plotting.plot_anomaly_map : Overlay a map on its image.
        """
        check_is_fitted(self)
        shape = np.shape(X)
        criterion = self.net_.criterion_
        maps = self._map_chunks(self._validate_X(X, reset=False),
                                lambda xb: criterion.per_pixel(self._forward(xb), xb))
        return np.asarray(self._combine_maps(maps), dtype=np.float32).reshape(shape)

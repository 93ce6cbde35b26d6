"""The training engine: skorch, extended for detectors that train without targets.

A detector trains one of three nets, chosen by its ``_net_class``:

* :class:`DetectorNet`: one player. The criterion compares the module's output with the
  input (there are no targets); skorch's own ``train_step`` runs it.
* :class:`AdversarialNet`: two players from one forward pass (OLED's reconstructor against its
  mask module, LTG's autoencoder against its noise generator).
* :class:`TwoStageNet`: one module trained in two stages with their own optimizers (ITAE's
  autoencoder, then the flows on its frozen features).

The two multi-optimizer nets extend skorch where its documentation says to: each computes
every player's gradients in ``train_step_single`` and steps the optimizers that play in
``_step_optimizer``. skorch's ``train_step`` stays in charge, so ``on_grad_computed``
callbacks (e.g. ``GradientNormClipping``) see every player's and every stage's gradients.
skorch's ``LRScheduler`` schedules ``optimizer_`` alone; :class:`EveryOptimizerLRScheduler`
schedules every optimizer of a net, each in the epochs (or batches) where it steps.

What a method's networks must provide is written down as Protocols below.
"""

import contextlib
import math
import signal
import threading
from typing import Any, Protocol, runtime_checkable

import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, LRScheduler, PassthroughScoring
from skorch.utils import to_tensor

__all__ = ["AdversarialCriterion", "AdversarialModule", "AdversarialNet", "BatchIterator",
           "DetectorCriterion", "DetectorNet", "DivergenceGuard", "EpochProgressBar",
           "EveryOptimizerLRScheduler", "TensorData",
           "TrainingDivergedError", "TwoStageModule", "TwoStageNet", "batch_bounds",
           "exact_cudnn"]


# ---------------------------------------------------------------------------- the contract
@runtime_checkable
class DetectorCriterion(Protocol):
    """The loss of a method (an ``nn.Module``).

    ``forward(output, x)`` is the training loss (a scalar tensor) for the module's ``output``
    on the batch ``x``; ``per_sample(output, x)`` returns the paper's novelty terms, a dict of
    1-D tensors (higher = more novel), e.g. ``{"rec": ..., "llk": ...}``.
    """

    def forward(self, output: Any, x: torch.Tensor) -> torch.Tensor: ...

    def per_sample(self, output: Any, x: torch.Tensor) -> dict: ...


@runtime_checkable
class AdversarialModule(Protocol):
    """A module with a second player: ``adversary`` is the submodule (or None) that
    :class:`AdversarialNet` trains with its own optimizer."""

    adversary: Any


@runtime_checkable
class AdversarialCriterion(DetectorCriterion, Protocol):
    """A criterion with the second player's loss, ``adversary_loss(output, x)`` (scalar)."""

    def adversary_loss(self, output: Any, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class TwoStageModule(Protocol):
    """A module trained in two stages: ``stages`` is the pair of submodules each stage
    trains, and ``stage`` (1 or 2) says which one runs; the criterion has ``stage`` too."""

    stages: Any
    stage: int


# ---------------------------------------------------------------------------- data
class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the fit is abandoned instead of kept."""


def batch_bounds(n, batch_size):
    """``(start, stop)`` of consecutive batches; a trailing one-row batch joins its neighbour.

    BatchNorm cannot normalise a single training row, so a last batch of one is avoided.
    """
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return list(zip(starts, starts[1:] + [n]))


class TensorData(torch.utils.data.Dataset):
    """A dataset over one tensor of samples (the detectors are trained without targets)."""

    def __init__(self, X):
        self.X = X

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], 0


class BatchIterator:
    """Yield ``(X[batch], None)`` by slicing one tensor: no per-sample Python work.

    The shuffle order comes from ``generator`` (a seeded ``torch.Generator``), so training is
    reproducible without touching the global RNG.
    """

    def __init__(self, dataset, batch_size, shuffle=False, generator=None):
        self.X, self.batch_size = dataset.X, batch_size
        self.shuffle, self.generator = shuffle, generator

    def __len__(self):
        return len(batch_bounds(len(self.X), self.batch_size))

    def __iter__(self):
        X = self.X
        if self.shuffle:
            X = X[torch.randperm(len(X), generator=self.generator).to(X.device)]
        for start, stop in batch_bounds(len(X), self.batch_size):
            yield X[start:stop], None


class DivergenceGuard(Callback):
    """Raise :class:`TrainingDivergedError` as soon as a batch loss is not finite."""

    def on_batch_end(self, net, batch=None, training=None, loss=None, **kwargs):
        value = float(loss.item())
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"the {'training' if training else 'validation'} loss became {value} in epoch "
                f"{len(net.history)}; lower learning_rate or rescale the input")


class EpochProgressBar(Callback):
    """A progress bar over the epochs of a fit, with the last epoch's losses beside it.

    What ``verbose=1`` shows (``verbose=2`` prints skorch's table, one line per epoch
    instead). The bar is tqdm's (a dependency of skorch); it writes to ``file`` (standard
    error by default) and is gone once training ends, so nothing of it is pickled.

    Parameters
    ----------
    desc : str or None, default=None
        Text before the bar (the estimator's class name when the estimator adds the bar);
        ``None`` is the module's class name.
    file : file-like or None, default=None
        Where the bar is drawn; ``None`` is ``sys.stderr``.
    """

    def __init__(self, desc=None, file=None):
        self.desc = desc
        self.file = file

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        from tqdm.auto import tqdm

        self.bar_ = tqdm(total=net.max_epochs, unit="epoch", file=self.file,
                         desc=self.desc or type(net.module_).__name__, dynamic_ncols=True)

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        losses = {key: f"{row[key]:.4g}" for key in row
                  if key.endswith("loss") and isinstance(row[key], (int, float))}
        self.bar_.set_postfix(losses, refresh=False)
        self.bar_.update(1)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        self.bar_.close()
        del self.bar_


def exact_cudnn():
    """Context in which cuDNN convolutions are deterministic and in true float32 (no TF32).

    TF32 (cuDNN's default on Ampere and later) perturbs the code z by ~1e-3, which moves
    values across LSA's quantisation bins: CUDA and CPU scores would then disagree; and
    non-deterministic algorithms would make two fits with the same seed differ on CUDA.
    """
    return torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, benchmark=False,
                                      deterministic=True, allow_tf32=False)


def _check(obj, protocol, what):
    if not isinstance(obj, protocol):
        raise TypeError(f"{type(obj).__name__} is not a {protocol.__name__} ({what}); see "
                        "sknovelty.engine")


# ---------------------------------------------------------------------------- nets
class _Interrupted(Exception):
    """A ``KeyboardInterrupt`` of the training loop, carried past skorch's ``partial_fit``."""


@contextlib.contextmanager
def _watch_sigint():
    """Context that yields a function telling whether SIGINT arrived in the block.

    In the main thread, where Python delivers signals, the SIGINT handler in force (Python's
    default raises ``KeyboardInterrupt``) is wrapped by one that notes the signal first; it
    is restored afterwards. Elsewhere, or when SIGINT has no Python handler (ignored, or the
    system's default, which ends the process), nothing is wrapped.
    """
    seen = []
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield lambda: False
        return

    def noting(signum, frame):
        seen.append(signum)
        return previous(signum, frame)

    signal.signal(signal.SIGINT, noting)
    try:
        yield lambda: bool(seen)
    finally:
        signal.signal(signal.SIGINT, previous)


class DetectorNet(NeuralNet):
    """skorch net for unsupervised training: the criterion compares the output with the input.

    The module and criterion instances passed as parameters are the trained ones, so they are
    pickled like ``module_`` (mapped to the CPU when CUDA is missing at load time).
    """

    def fit_loop(self, X, y=None, **fit_params):
        # skorch's partial_fit swallows KeyboardInterrupt and returns as if training had ended:
        # that is how its callbacks stop training (EarlyStopping raises it), but after a real
        # Ctrl-C an interrupted fit would replace a fitted model with a half-trained one. A
        # KeyboardInterrupt that follows a SIGINT is carried past it instead (partial_fit
        # below raises it again); one a callback raises still ends training as in skorch.
        with _watch_sigint() as interrupted:
            try:
                return super().fit_loop(X, y, **fit_params)
            except KeyboardInterrupt as exc:
                if interrupted():
                    raise _Interrupted() from exc
                raise

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """skorch's ``partial_fit``, except that ``KeyboardInterrupt`` reaches the caller."""
        try:
            return super().partial_fit(X, y, classes, **fit_params)
        except _Interrupted as exc:
            for callback in self.callbacks_:  # close what on_train_begin opened (a bar)
                if isinstance(callback[1], EpochProgressBar):
                    callback[1].on_train_end(self)
            raise exc.__cause__ from None

    def initialize(self):
        super().initialize()
        _check(self.criterion_, DetectorCriterion, "the criterion")
        self.cuda_dependent_attributes_ = [*self.cuda_dependent_attributes_, "module", "criterion"]
        return self

    def get_loss(self, y_pred, y_true, X=None, training=False):
        return self.criterion_(y_pred, to_tensor(X, device=self.device))

    def _players(self):
        """Names of the optimizers that step in the current epoch (here: the only one)."""
        return ["optimizer"]


class _SeveralOptimizersNet(DetectorNet):
    """A net whose ``train_step_single`` fills the gradients of several optimizers' parameters
    and whose ``_players()`` names the optimizers that step this time."""

    def _step_optimizer(self, step_fn):
        # skorch's step_fn zeroes every optimizer's gradients, runs train_step_single (which
        # fills them) and fires on_grad_computed: run it once, then step each player (skorch's
        # default would pass step_fn to every optimizer and run the forward pass once each)
        step_fn()
        for name in self._players():
            getattr(self, name + "_").step()


class AdversarialNet(_SeveralOptimizersNet):
    """skorch net for two players trained against each other from one forward pass.

    The module's ``adversary`` submodule (OLED's mask module, LTG's noise generator) has its
    own optimizer ``adversary_optimizer_`` (same class and settings as ``optimizer_``, which
    holds every other parameter). Each training step runs the module once, then

    * the main player minimises ``criterion_(output, X)``;
    * every ``adversary_period``-th epoch (0, k, 2k, ...) the adversary minimises
      ``criterion_.adversary_loss(output, X)``, recorded per batch and as the epoch mean
      ``adversary_loss`` in the history.

    Both gradients are taken from the same graph before either player steps (as the
    reference implementations do), each only with respect to its own player's parameters.
    """

    def __init__(self, *args, adversary_period=1, **kwargs):
        super().__init__(*args, **kwargs)
        self.adversary_period = adversary_period

    def get_default_callbacks(self):
        # the epoch mean of adversary_loss, on epochs where the adversary was updated (before
        # the print log, so that verbose=1 shows it)
        *head, last = super().get_default_callbacks()
        mean = PassthroughScoring(name="adversary_loss", on_train=True, lower_is_better=None)
        return [*head, ("adversary_loss", mean), last]

    def initialize_optimizer(self, *args, **kwargs):
        _check(self.module_, AdversarialModule, "the module")
        _check(self.criterion_, AdversarialCriterion, "the criterion")
        adversary = set(self.module_.adversary.parameters())
        main = [(n, p) for n, p in self.get_all_learnable_params() if p not in adversary]
        groups, params = self.get_params_for_optimizer("optimizer", main)
        self.optimizer_ = self.optimizer(*groups, **params)
        groups, params = self.get_params_for_optimizer(
            "optimizer", self.module_.adversary.named_parameters())
        self.adversary_optimizer_ = self.optimizer(*groups, **params)
        return self

    def _adversary_plays(self):
        return (len(self.history) - 1) % self.adversary_period == 0

    def _players(self):
        return ["optimizer", "adversary_optimizer"] if self._adversary_plays() else ["optimizer"]

    @staticmethod
    def _params(optimizer):
        return [p for group in optimizer.param_groups for p in group["params"]]

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        Xi = batch[0]
        output = self.infer(Xi, **fit_params)
        loss = self.get_loss(output, None, X=Xi, training=True)
        players = [(self.optimizer_, loss)]
        if self._adversary_plays():
            adversary_loss = self.criterion_.adversary_loss(output, to_tensor(Xi, device=self.device))
            players.append((self.adversary_optimizer_, adversary_loss))
            self.history.record_batch("adversary_loss", adversary_loss.item())
        for k, (optimizer, player_loss) in enumerate(players):
            params = self._params(optimizer)
            grads = torch.autograd.grad(player_loss, params, retain_graph=k + 1 < len(players),
                                        allow_unused=True)
            for p, g in zip(params, grads):
                # autograd.grad does not apply the gradient-layout contract of backward()
                # (a transposed convolution's weight gradient comes back in another memory
                # order); CUDA's fused Adam requires each gradient to have its parameter's strides
                # (the CPU's fused Adam does not reject them: it reads them in the wrong order)
                mismatched = g is not None and g.layout == torch.strided and g.stride() != p.stride()
                p.grad = torch.empty_like(p).copy_(g) if mismatched else g
        return {"loss": loss, "y_pred": output}


class TwoStageNet(_SeveralOptimizersNet):
    """skorch net for a module trained in two stages (ITAE: the autoencoder, then the flows).

    The first ``first_stage_epochs`` epochs train ``module_.stages[0]`` with ``optimizer_``;
    the remaining epochs train ``module_.stages[1]`` with ``second_optimizer_`` (learning rate
    ``second_lr``, or ``lr`` when None), with the first stage's submodule in eval mode. The
    module's and the criterion's ``stage`` follow, in training and in validation.
    """

    def __init__(self, *args, first_stage_epochs=1, second_lr=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.first_stage_epochs = first_stage_epochs
        self.second_lr = second_lr

    def initialize_optimizer(self, *args, **kwargs):
        _check(self.module_, TwoStageModule, "the module")
        first, second = self.module_.stages
        groups, params = self.get_params_for_optimizer("optimizer", first.named_parameters())
        self.optimizer_ = self.optimizer(*groups, **params)
        if second is not None and any(True for _ in second.parameters()):
            groups, params = self.get_params_for_optimizer("optimizer", second.named_parameters())
            if self.second_lr is not None:
                params["lr"] = self.second_lr
            self.second_optimizer_ = self.optimizer(*groups, **params)
        return self

    def _stage(self):
        return 1 if len(self.history) <= self.first_stage_epochs else 2

    def _enter_stage(self):
        stage = self._stage()
        self.module_.stage = self.criterion_.stage = stage
        return stage

    def _players(self):
        return ["optimizer" if self._stage() == 1 else "second_optimizer"]

    def train_step_single(self, batch, **fit_params):
        stage = self._enter_stage()
        self._set_training(True)
        if stage == 2:
            self.module_.stages[0].eval()
        Xi = batch[0]
        output = self.infer(Xi, **fit_params)
        loss = self.get_loss(output, None, X=Xi, training=True)
        loss.backward()
        return {"loss": loss, "y_pred": output}

    def validation_step(self, batch, **fit_params):
        self._enter_stage()
        return super().validation_step(batch, **fit_params)


# ---------------------------------------------------------------------------- callbacks
class EveryOptimizerLRScheduler(LRScheduler):
    """skorch's ``LRScheduler`` for every optimizer of a net: every player, every stage.

    Same parameters as ``skorch.callbacks.LRScheduler`` (``policy``, ``monitor``,
    ``step_every``, the policy's own keywords); one scheduler of the policy is made for each
    optimizer the net registered (``optimizer_``, ``adversary_optimizer_``,
    ``second_optimizer_``). A scheduler steps only after an epoch (or batch) in which its
    optimizer stepped: an adversary updated every k-th epoch decays k times slower in epochs,
    and ITAE's second stage starts at its own initial rate. The main optimizer's rate is
    recorded as ``event_lr`` (as skorch does); the others as ``event_lr_<name>``.

    Examples
    --------
    >>> from sknovelty import AdversarialMaskingDetector
    >>> from sknovelty.engine import EveryOptimizerLRScheduler
    >>> det = AdversarialMaskingDetector(callbacks=[
    ...     EveryOptimizerLRScheduler(policy="StepLR", step_size=10, gamma=0.5)])
    """

    def _get_scheduler(self, net, policy, **scheduler_kwargs):
        # every optimizer's scheduler starts at the same point of the history as skorch's
        make = super()._get_scheduler
        self.lr_schedulers_ = {}
        for name in net._optimizers:
            optimizer = getattr(net, name + "_")
            self.lr_schedulers_[name] = make(_OptimizerView(net, optimizer), policy,
                                             **scheduler_kwargs)
        return self.lr_schedulers_["optimizer"]

    def _step(self, net, lr_scheduler, score=None):
        # called by skorch with the main scheduler; step those whose optimizer stepped
        for name in net._players():
            super()._step(net, self.lr_schedulers_[name], score=score)

    def _record_last_lr(self, net, kind):
        super()._record_last_lr(net, kind)
        if self.event_name is None:
            return
        for name, scheduler in self.lr_schedulers_.items():
            if name != "optimizer":
                lr = scheduler.optimizer.param_groups[0]["lr"]
                record = net.history.record if kind == "epoch" else net.history.record_batch
                record(f"{self.event_name}_{name}", lr)


class _OptimizerView:
    """What skorch's ``LRScheduler._get_scheduler`` reads of a net (its history and
    ``optimizer_``), with ``optimizer_`` replaced by another of the net's optimizers."""

    def __init__(self, net, optimizer):
        self.history, self.optimizer_ = net.history, optimizer

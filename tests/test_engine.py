"""The training engine: callbacks see every player's and every stage's gradients, and the
nets check the contract of the modules they train."""

import pytest
import torch
from skorch.callbacks import Callback, LRScheduler

from sknovelty.engine import AdversarialNet, DetectorNet, EveryOptimizerLRScheduler, TwoStageNet
from sknovelty.registry import ESTIMATORS


class GradRecorder(Callback):
    """Per epoch, the parameter-name prefixes that had a gradient in on_grad_computed."""

    def initialize(self):
        self.seen_ = {}
        return self

    def on_grad_computed(self, net, named_parameters, **kwargs):
        names = {name.split(".")[0] for name, p in named_parameters if p.grad is not None}
        self.seen_.setdefault(len(net.history), set()).update(names)


def _recorded(det, X):
    recorder = GradRecorder()
    det.set_params(callbacks=[("grads", recorder)]).fit(X)
    return dict(det.net_.callbacks_)["grads"].seen_


def test_one_player_net_reports_every_gradient(digits):
    X, y = digits
    det = ESTIMATORS["AE"].tiny()
    seen = _recorded(det, X[y == 0][:40])
    assert isinstance(det.net_, DetectorNet)
    assert seen == {1: {"encoder", "decoder"}, 2: {"encoder", "decoder"}}


def test_adversarial_net_reports_both_players_when_both_play(digits):
    # OLED's mask module (masker) plays on epochs 1, 3, ... with mask_update_period=2; the
    # reconstructor on every epoch
    X, y = digits
    det = ESTIMATORS["OLED"].tiny(epochs=3, mask_update_period=2)
    seen = _recorded(det, X[y == 0][:40])
    assert isinstance(det.net_, AdversarialNet)
    assert seen[1] == {"reconstructor", "masker"} == seen[3]
    assert seen[2] == {"reconstructor"}


def test_two_stage_net_reports_each_stage(clips):
    det = ESTIMATORS["ITAE"].tiny(epochs=2, flow_epochs=2)
    seen = _recorded(det, clips)
    assert isinstance(det.net_, TwoStageNet)
    assert seen[1] == seen[2] == {"encoder", "decoder"}
    assert seen[3] == seen[4] == {"flow_static", "flow_dynamic"}


def _halving():
    return EveryOptimizerLRScheduler(policy="StepLR", step_size=1, gamma=0.5)


def _lr(optimizer):
    return optimizer.param_groups[0]["lr"]


def test_every_optimizer_is_scheduled_in_the_epochs_it_steps(digits, clips):
    # halving per epoch played; ==: powers of two times the initial rate are exact in floats
    X, y = digits
    det = ESTIMATORS["OLED"].tiny(epochs=3, mask_update_period=2, callbacks=[_halving()])
    net = det.fit(X[y == 0][:40]).net_
    assert _lr(net.optimizer_) == det.learning_rate / 8  # reconstructor: epochs 1, 2, 3
    assert _lr(net.adversary_optimizer_) == det.learning_rate / 4  # masker: epochs 1 and 3
    # the rate each epoch ran with, as skorch's event_lr records it
    assert net.history[:, "event_lr"] == [det.learning_rate / k for k in (1, 2, 4)]
    assert net.history[:, "event_lr_adversary_optimizer"] == [det.learning_rate / k
                                                             for k in (1, 2, 2)]
    det = ESTIMATORS["ITAE"].tiny(epochs=2, flow_epochs=2, flow_learning_rate=2.0 ** -10,
                                  callbacks=[_halving()])
    net = det.fit(clips).net_
    assert _lr(net.optimizer_) == det.learning_rate / 4  # stage 1: epochs 1-2
    assert _lr(net.second_optimizer_) == 2.0 ** -12  # stage 2 starts at its own rate: epochs 3-4
    # skorch's own scheduler, for comparison, decays the first optimizer alone and every epoch
    det.set_params(callbacks=[LRScheduler(policy="StepLR", step_size=1, gamma=0.5)]).fit(clips)
    assert _lr(det.net_.optimizer_) == det.learning_rate / 16
    assert _lr(det.net_.second_optimizer_) == 2.0 ** -10


def test_nets_reject_modules_that_break_the_contract():
    class NoAdversary(torch.nn.Linear):  # a module with parameters, but no adversary/stages
        def __init__(self):
            super().__init__(2, 2)

    class Loss(torch.nn.Module):
        def forward(self, output, x):
            return (output - x).square().mean()

        def per_sample(self, output, x):
            return {"rec": (output - x).square().flatten(1).sum(1)}

    with pytest.raises(TypeError, match="AdversarialModule"):
        AdversarialNet(NoAdversary(), criterion=Loss(), optimizer=torch.optim.Adam).initialize()
    with pytest.raises(TypeError, match="TwoStageModule"):
        TwoStageNet(NoAdversary(), criterion=Loss(), optimizer=torch.optim.Adam).initialize()
    with pytest.raises(TypeError, match="DetectorCriterion"):
        DetectorNet(NoAdversary(), criterion=torch.nn.MSELoss(), optimizer=torch.optim.Adam).initialize()


def _import_graph():
    """{module: set of sknovelty modules it imports, at module level or inside functions}."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "sknovelty"
    graph = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                deps |= ({f"{target}.{a.name}" for a in node.names} if node.module is None
                         else {target})
        graph[name] = deps
    return {name: {d for d in deps if d in graph} for name, deps in graph.items()}


def test_imports_run_one_way():
    graph = _import_graph()
    assert graph["sknovelty.engine"] == set() and graph["sknovelty.io"] <= {"sknovelty._version"}
    # baselines sit below the methods: they import nn/ and the base, never a method module
    # (the modules of the registry's classes)
    methods = {entry.cls.__module__ for entry in ESTIMATORS.values()}
    assert not graph["sknovelty.baselines"] & methods
    # the base's concerns sit below it: they import neither the base nor a method module
    for name in ("_device", "_validation", "_scoring", "_complexity", "_restore", "thresholds"):
        assert not graph[f"sknovelty.{name}"] & {"sknovelty.base", *methods}, name
    for name, deps in graph.items():
        if name.startswith("sknovelty.nn"):
            assert all(d.startswith("sknovelty.nn") or d == "sknovelty._checks" for d in deps), name

    def reaches(start, goal, seen=()):
        return any(d == goal or (d not in seen and reaches(d, goal, (*seen, d)))
                   for d in graph[start] if d != "sknovelty")

    for name in graph:
        assert name == "sknovelty" or not reaches(name, name), f"import circle through {name}"


@pytest.mark.parametrize("name", ["AE", "OLED", "ITAE"])
def test_verbose_1_draws_an_epoch_bar_with_the_losses_and_2_the_table(name, digits, clips,
                                                                       capsys):
    X = digits[0][:40] if "images" in ESTIMATORS[name].inputs else clips[:8]
    ESTIMATORS[name].tiny(verbose=1).fit(X)
    out, err = capsys.readouterr()
    epochs = ESTIMATORS[name].tiny()._net_kwargs().get("max_epochs", 2)
    cls = ESTIMATORS[name].cls.__name__
    assert f"{cls}: 100%" in err and f"{epochs}/{epochs}" in err  # one bar, to the last epoch
    assert "train_loss=" in err and "valid_loss=" in err
    assert "epoch    train_loss" not in out + err  # not skorch's table
    det = ESTIMATORS[name].tiny(verbose=2).fit(X)
    out, err = capsys.readouterr()
    assert "train_loss" in out and "%|" not in err  # skorch's table, no bar
    assert "progress_bar" not in dict(det.net_.callbacks_)
    silent = ESTIMATORS[name].tiny().fit(X)
    assert capsys.readouterr() == ("", "")
    assert not any(hasattr(cb, "bar_") for _, cb in silent.net_.callbacks_)

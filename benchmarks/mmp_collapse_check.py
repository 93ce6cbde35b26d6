"""Diagnose MMP's dead-unit collapse on one MNIST-5k class (the issue-5 note's diagnosis).

    python benchmarks/mmp_collapse_check.py --seed 1 --cls 5                 # collapses (raises)
    python benchmarks/mmp_collapse_check.py --seed 1 --cls 5 --lr 3e-4       # trains
    python benchmarks/mmp_collapse_check.py --seed 1 --cls 5 --lr 3e-4 --epochs 120  # the defaults

The defaults here are MMP's defaults at the time of the diagnosis (learning rate 1e-3, 60
epochs; the estimator now defaults to 3e-4 and 120). Fits MMP with them (all else at the
estimator's defaults) and prints the loss history every 5 epochs, the last epoch's
participation, the AUROC, and how much the predictions vary across inputs. A collapsed fit raises ``TrainingDivergedError`` (its message is printed); before the
guard it gave a constant prediction and an AUROC ~0.5 that correlated ~1 with the input's ink.
"""

import argparse

from sknovelty import MaskedMultiPredictionDetector, TrainingDivergedError
from sknovelty.datasets import load_mnist_5k, one_class_split
from sknovelty.metrics import auroc


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cls", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    X, y = load_mnist_5k()
    X_train, X_test, y_test = one_class_split(X, y, args.cls, test_size=0.2, random_state=args.seed)
    det = MaskedMultiPredictionDetector(random_state=args.seed, learning_rate=args.lr,
                                        epochs=args.epochs)
    try:
        det.fit(X_train)
    except TrainingDivergedError as err:
        print("collapsed:", err)
        return
    h = det.net_.history
    print("train loss every 5 epochs:", [round(v, 4) for v in h[:, "train_loss"]][::5])
    print("participation:", det.participation_.round(3))
    print("AUROC:", round(auroc(y_test, det.score_samples(X_test)), 3))
    preds = det.predict_all(X_test[:50])
    print("prediction std across inputs:", float(preds.std(0).mean()))


if __name__ == "__main__":
    main()

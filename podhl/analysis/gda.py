"""POD Table 9: Gaussian discriminant analysis on the latent features vs the loss' own prediction.

``gda(trainer, reg_param=0.1, normalize=False)`` fits scikit-learn's
``QuadraticDiscriminantAnalysis`` (one Gaussian per class: its own mean and covariance, priors
from the class frequencies) on the training set's latent features x (through the train loader,
i.e. with its augmentation) and reports its test accuracy (``gda_acc``) next to the criterion's
prediction on the same test features (``cosine_acc``: argmax of ``criterion.logits``, the cosine
argmax of eq. 21–24 for the POD family).

Regularisation (a chosen default; the paper gives none): ``reg_param`` r shrinks every class
covariance towards the identity, Σ_c ← (1 − r)·Σ_c + r·I (scikit-learn's definition), which keeps
Σ_c invertible when a class has fewer samples than dimensions (e.g. 500 CIFAR-100 images in 512
dimensions). ``normalize=True`` fits on x/‖x‖ instead of x (both sides of the comparison then see
directions only). Enable: ``podhl-train loss=pod +analysis=gda`` (``analysis.gda.reg_param=0.5``).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from podhl.analysis.common import accuracy, predict


@torch.no_grad()
def gda(trainer, reg_param: float = 0.1, normalize: bool = False) -> dict:
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis

    if not 0.0 <= reg_param <= 1.0:
        raise ValueError(f"reg_param must be in [0, 1], got {reg_param}")
    x_train, y_train = trainer.collect_features("train")
    x_test, y_test = trainer.collect_features("test")
    cosine_pred = predict(trainer, x_test)
    if normalize:
        x_train, x_test = F.normalize(x_train, dim=1), F.normalize(x_test, dim=1)
    qda = QuadraticDiscriminantAnalysis(reg_param=float(reg_param))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Variables are collinear")
        qda.fit(x_train.double().numpy(), y_train.numpy())
        gda_pred = torch.from_numpy(qda.predict(x_test.double().numpy()))
    return {
        "gda_acc": accuracy(gda_pred, y_test),
        "cosine_acc": accuracy(cosine_pred, y_test),
        "reg_param": float(reg_param),
        "normalize": bool(normalize),
        "num_train": int(y_train.numel()),
        "num_test": int(y_test.numel()),
    }

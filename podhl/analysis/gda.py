"""POD Table 9: Gaussian discriminant analysis on the latent features vs the loss' own prediction.

``gda(source, shrinkage=0.1, normalize=False)`` fits scikit-learn's ``QuadraticDiscriminantAnalysis`` (one
Gaussian per class: its own mean and covariance, priors from the class frequencies) on the training set's
latent features x (without augmentation) and reports its test accuracy (``gda_acc``) next to the criterion's
prediction on the same test features (``cosine_acc``: argmax of ``criterion.logits``, the cosine argmax of
eq. 21–24 for the POD family).

Regularisation (our choice; the paper gives none): ``shrinkage`` α shrinks every class covariance towards a
multiple of the identity, Σ_c ← (1 − α)·Σ_c + α·(tr Σ_c / d)·I (scikit-learn's ``eigen`` solver; ``"auto"``
picks α by the Ledoit–Wolf lemma). It keeps Σ_c invertible when a class has fewer samples than dimensions
(e.g. 500 CIFAR-100 images in 512 dimensions), where scikit-learn ≥ 1.9 refuses an unregularized fit, and it
does not depend on the features' scale. ``normalize=True`` fits on x/‖x‖ instead of x (both sides of the
comparison then see directions only). Enable: ``podhl-train loss=pod +analysis=gda``
(``analysis.gda.shrinkage=0.5``).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from podhl.analysis.common import accuracy
from podhl.checks import in_range


@torch.no_grad()
def gda(source, shrinkage: float | str = 0.1, normalize: bool = False) -> dict:
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis

    if shrinkage != "auto":
        shrinkage = in_range("shrinkage", shrinkage, 0.0, 1.0)
    x_train, y_train = source.features("train")
    x_test, y_test = source.features("test")
    cosine_pred = source.predict(x_test)
    counts = torch.bincount(y_train, minlength=source.num_classes if hasattr(source, "num_classes") else 0)
    if int(counts.min()) < 2:  # a Gaussian needs two samples; say so instead of failing after training
        return {
            "gda_acc": None,
            "cosine_acc": accuracy(cosine_pred, y_test),
            "num_train": int(y_train.numel()),
            "num_test": int(y_test.numel()),
            "skipped": f"class {int(counts.argmin())} has {int(counts.min())} training sample(s); "
            "GDA needs ≥ 2 per class",
        }
    if normalize:
        x_train, x_test = F.normalize(x_train, dim=1), F.normalize(x_test, dim=1)
    scale = (
        x_train.double().std().clamp_min(1e-30)
    )  # QDA's decisions don't change; sklearn's rank tolerance is absolute
    x_train, x_test = x_train.double() / scale, x_test.double() / scale
    qda = QuadraticDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Variables are collinear")
        qda.fit(x_train.double().numpy(), y_train.numpy())
        gda_pred = torch.from_numpy(qda.predict(x_test.double().numpy()))
    return {
        "gda_acc": accuracy(gda_pred, y_test),
        "cosine_acc": accuracy(cosine_pred, y_test),
        "shrinkage": shrinkage,
        "normalize": bool(normalize),
        "num_train": int(y_train.numel()),
        "num_test": int(y_test.numel()),
    }

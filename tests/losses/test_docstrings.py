"""The loss package's API documentation (issue 19 item 4): every public class and function of
``podhl.losses`` has a Google-style docstring that the docs site renders (mkdocstrings) and ``help()``
shows; each loss names its equation (or says the papers give none), documents every constructor
parameter with its default, and says what ``forward`` and ``logits`` return. The renamed
``MultiMarginLoss`` still works for one release, with a ``DeprecationWarning``."""

from __future__ import annotations

import importlib
import inspect
import math
import re
import warnings

import pytest
import torch
from hydra.utils import get_class

import podhl.losses
from podhl.config import compose_config, config_options
from podhl.errors import ConfigError

FAMILIES = ("pod", "margin", "center", "hypersphere", "linear")
LOSS_CLASSES = sorted(
    {get_class(compose_config([f"loss={name}"]).loss._target_) for name in config_options("loss")},
    key=lambda cls: cls.__name__,
)
EXPORTED = [getattr(podhl.losses, name) for name in podhl.losses.__all__]
FUNCTIONS = sorted(
    {
        getattr(importlib.import_module(f"podhl.losses.{family}.math"), name)
        for family in FAMILIES
        for name in importlib.import_module(f"podhl.losses.{family}.math").__all__
        if inspect.isfunction(getattr(importlib.import_module(f"podhl.losses.{family}.math"), name))
    },
    key=lambda f: f.__qualname__,
)
EQUATION = re.compile(r"\b[Ee]qs?\.\s*\d|no equation number", re.IGNORECASE)
ENTRY = re.compile(r"^(\*{0,2}\w+)(?: \(([^)]*)\))?: ")


def own_doc(obj) -> str:
    """The object's own docstring (not a base class's, not a dataclass's generated signature)."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    if not doc or (inspect.isclass(obj) and doc.startswith(f"{obj.__name__}(")):
        return ""
    return inspect.cleandoc(doc)


def section(doc: str, title: str) -> dict[str, tuple[str | None, str]]:
    """A Google-style section (``Args:``, ``Returns:``) as {name: (type in parentheses, description)}."""
    lines = doc.splitlines()
    if f"{title}:" not in lines:
        return {}
    entries: dict[str, tuple[str | None, str]] = {}
    name = None
    for line in lines[lines.index(f"{title}:") + 1 :]:
        if line and not line.startswith(" "):
            break  # the next section (or text) at the header's indentation
        if line.startswith("    ") and not line.startswith("     "):
            match = ENTRY.match(line[4:])
            assert match, f"{title}: entry without 'name: description': {line!r}"
            name = match.group(1)
            entries[name] = (match.group(2), line[4 + match.end() :])
        elif line.strip():
            assert name, f"{title}: continuation before an entry: {line!r}"
            kind, text = entries[name]
            entries[name] = (kind, f"{text} {line.strip()}")
    return entries


def parameters(callable_) -> dict[str, inspect.Parameter]:
    """The documented names of a callable's parameters (``**kwargs`` with its stars, no ``self``)."""
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return {stars.get(p.kind, "") + name: p for name, p in inspect.signature(callable_).parameters.items()}


def check_default(name: str, param: inspect.Parameter, description: str) -> None:
    """A parameter with a default says so ("Default X" or "(default"), and X is the actual default."""
    if param.default is inspect.Parameter.empty:
        return
    assert re.search(r"\bdefault", description, re.IGNORECASE), f"{name}: no default stated: {description!r}"
    match = re.search(r"\bDefault ([^\s,;:)]+)", description)
    if match is None:
        return  # stated as "X (default, ...)"
    token = match.group(1).rstrip(".").strip("`\"'")
    default = param.default
    if default is None or isinstance(default, (bool, str)):
        assert token == str(default), f"{name}: docstring says Default {token}, signature {default!r}"
    else:
        assert math.isclose(float(token), float(default)), (
            f"{name}: docstring says Default {token}, signature {default!r}"
        )


def test_every_public_class_and_function_has_a_docstring():
    public = (
        EXPORTED
        + FUNCTIONS
        + [importlib.import_module(f"podhl.losses.{family}.head") for family in ("margin", "linear", "pod")]
    )
    public += [
        podhl.losses.margin.NormalizedClassifier,
        podhl.losses.margin.MarginHead,
        podhl.losses.linear.LinearClassifier,
        podhl.losses.pod.PEDCCCriterion,
    ]
    missing = [getattr(obj, "__qualname__", getattr(obj, "__name__", obj)) for obj in public if not own_doc(obj)]
    assert not missing
    base = podhl.losses.Criterion
    undocumented = [
        name
        for name, member in vars(base).items()
        if inspect.isfunction(member) and not name.startswith("_") and not member.__doc__
    ]
    assert not undocumented, undocumented


@pytest.mark.parametrize("cls", LOSS_CLASSES, ids=lambda cls: cls.__name__)
def test_each_loss_docstring_names_its_equation_parameters_and_returns(cls):
    doc = own_doc(cls)
    summary = doc.split("\n\n")[0]
    assert EQUATION.search(doc), f"{cls.__name__}: no 'eq. N' and no 'no equation number'"
    assert re.search(r"\b(19|20)\d\d\b|\bPOD\b|\bHL\b", doc), f"{cls.__name__}: no paper named"
    assert "$" in doc and len(summary.splitlines()) <= 2, cls.__name__  # a formula; a short first paragraph
    assert re.search(r"Config: ``loss=\w+", doc), f"{cls.__name__}: no config name"
    args = section(doc, "Args")
    params = parameters(cls)
    assert list(args) == list(params), f"{cls.__name__}: Args {list(args)} vs __init__ {list(params)}"
    for name, (_, description) in args.items():
        check_default(f"{cls.__name__}.{name}", params[name], description)
    returns = section(doc, "Returns")
    assert returns.keys() == {"forward", "logits"}, f"{cls.__name__}: Returns {list(returns)}"
    assert returns["forward"][0] == "dict[str, torch.Tensor]" and returns["logits"][0] == "torch.Tensor"
    assert "``loss``" in returns["forward"][1] and "(B, " in returns["logits"][1]


def test_each_loss_documents_the_terms_its_forward_returns():
    """The names in Returns → forward are the keys ``forward`` returns (step 0 and, for COT, step 1)."""
    torch.manual_seed(0)
    features, labels = torch.randn(6, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    for cls in LOSS_CLASSES:
        loss = cls(num_classes=3, feat_dim=8)
        loss.on_epoch_start(loss.__dict__.get("warmup_epochs", 0) + 1)
        keys = set()
        for step in range(loss.steps_per_batch):
            keys |= set(loss(features, labels, step=step))
        documented = set(re.findall(r"``(\w+)``", section(own_doc(cls), "Returns")["forward"][1]))
        assert keys <= documented, f"{cls.__name__}: forward returns {sorted(keys - documented)} undocumented"


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
def test_each_public_function_documents_its_arguments_and_result(function):
    """Every function of the maths (``podhl.losses.functional``): Args match the signature, defaults are
    stated, a Returns section, and every parameter and the result annotated (the docs site reads types
    from the signature)."""
    doc = own_doc(function)
    args = section(doc, "Args")
    params = parameters(function)
    assert list(args) == list(params), f"{function.__name__}: Args {list(args)} vs {list(params)}"
    for name, (_, description) in args.items():
        check_default(f"{function.__name__}.{name}", params[name], description)
    assert "\nReturns:\n" in doc, function.__name__
    signature = inspect.signature(function)
    assert signature.return_annotation is not inspect.Signature.empty, function.__name__
    assert all(p.annotation is not inspect.Parameter.empty for p in signature.parameters.values()), function.__name__


@pytest.mark.parametrize(
    "cls",
    [
        podhl.losses.OfficialSwitches,
        podhl.losses.BatchEWMA,
        podhl.losses.margin.NormalizedClassifier,
        podhl.losses.margin.MarginHead,
        podhl.losses.linear.LinearClassifier,
        podhl.losses.pod.PEDCCCriterion,
        podhl.losses.Criterion,
    ],
    ids=lambda cls: cls.__name__,
)
def test_the_bases_and_helpers_document_their_parameters(cls):
    args = section(own_doc(cls), "Args")
    params = parameters(cls)
    assert list(args) == list(params), f"{cls.__name__}: Args {list(args)} vs __init__ {list(params)}"
    for name, (_, description) in args.items():
        check_default(f"{cls.__name__}.{name}", params[name], description)


# ---------------------------------------------------------------- the name clashes
OLD = "MultiMarginLoss"


@pytest.mark.parametrize("module", ["podhl.losses", "podhl.losses.margin", "podhl.losses.margin.mml"])
def test_the_deprecated_alias_warns_and_still_works(module):
    with pytest.warns(DeprecationWarning, match="AMCMSoftmaxLoss"):
        alias = getattr(importlib.import_module(module), OLD)
    assert alias is podhl.losses.AMCMSoftmaxLoss
    torch.manual_seed(0)
    loss = alias(num_classes=3, feat_dim=4, angular_margin=0.3, cosine_margin=0.2)
    features, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    torch.manual_seed(0)
    renamed = podhl.losses.AMCMSoftmaxLoss(num_classes=3, feat_dim=4)
    assert torch.equal(loss(features, labels)["loss"], renamed(features, labels)["loss"])


def test_an_old_config_target_still_builds_with_a_warning():
    with pytest.warns(DeprecationWarning, match=OLD):
        cls = get_class(f"podhl.losses.margin.mml.{OLD}")
    assert cls is podhl.losses.AMCMSoftmaxLoss
    assert compose_config(["loss=mml"]).loss._target_ == "podhl.losses.margin.mml.AMCMSoftmaxLoss"


def test_the_alias_is_not_exported_and_torch_is_not_shadowed():
    assert OLD not in podhl.losses.__all__ and OLD not in podhl.losses.margin.__all__
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # a star import touches no deprecated name
        exec("from torch.nn import *\nfrom podhl.losses import *", namespace)
    assert namespace[OLD] is torch.nn.MultiMarginLoss
    with pytest.raises(AttributeError, match="NoSuchLoss"):
        podhl.losses.NoSuchLoss  # noqa: B018  (unknown names still fail)


def test_arcface_refuses_a_margin_in_degrees_and_says_so():
    """pytorch-metric-learning's ArcFaceLoss takes degrees (default 28.6); podhl's takes radians."""
    assert "radians" in own_doc(podhl.losses.ArcFaceLoss) and "degrees" in own_doc(podhl.losses.ArcFaceLoss)
    with pytest.raises(ConfigError, match=r"radians.*degrees.*got 28\.6"):
        podhl.losses.ArcFaceLoss(num_classes=3, feat_dim=4, margin=28.6)

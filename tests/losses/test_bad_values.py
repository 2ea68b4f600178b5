"""Every loss parameter refuses a bad value in one style: the message names the key exactly as in the
YAML (``official.penalty_power`` for a nested one), the allowed values, and the value given."""

from __future__ import annotations

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from podhl.config import CONFIG_DIR, compose_config, config_options
from podhl.errors import ConfigError

# (loss, key as in the YAML, bad value as a command-line override, further overrides)
CASES = [
    ("softmax", "bias", "maybe", ()),
    ("cot", "normalize_by", "n", ()),
    ("cot", "bias", "maybe", ()),
    ("hml", "power", "0.5", ()),
    ("hml", "bias", "maybe", ()),
    ("center", "lam", "-1", ()),
    ("center", "alpha", "0", ()),
    ("center", "alpha", "1.5", ()),
    ("center", "bias", "maybe", ()),
    ("ccl", "lam", "-0.1", ()),
    ("ccl", "radius", "0", ()),
    ("ccl", "bias", "maybe", ()),
    ("cosine", "pedcc_seed", "0.5", ()),
    ("cosine", "pedcc_method", "lattice", ()),
    ("cosine", "pedcc_file", "no/such/pedcc.pt", ()),
    ("nac", "alpha", "-0.1", ()),
    ("nac", "initial_m", "-1", ()),
    ("nac", "norm_source", "logits", ()),
    ("nac", "denominator", "max", ()),
    ("nac", "delta_schedule", "linear", ()),
    ("nac", "pedcc_seed", "x", ()),
    ("nac", "pedcc_method", "lattice", ()),
    ("nac", "pedcc_file", "no/such/pedcc.pt", ()),
    ("pod", "alpha", "-1", ()),
    ("pod", "lam", "-1", ()),
    ("pod", "sc_divide_by_n_minus_1", "maybe", ()),
    ("pod", "initial_m", "-0.05", ()),
    ("pod", "norm_source", "logits", ()),
    ("pod", "denominator", "max", ()),
    ("pod", "delta_schedule", "linear", ()),
    ("pod", "pedcc_seed", "1.5", ()),
    ("pod", "pedcc_method", "grid", ()),
    ("pod", "pedcc_file", "no/such/pedcc.pt", ()),
    ("pedcc", "s", "0", ()),
    ("pedcc", "m", "2", ()),
    ("pedcc", "lam", "-1", ()),
    ("pedcc", "n_root", "0.5", ()),
    ("pedcc", "pedcc_seed", "0.5", ()),
    ("pedcc", "pedcc_method", "lattice", ()),
    ("pedcc", "pedcc_file", "no/such/pedcc.pt", ()),
    ("pedcc", "mse_reduction", "mean", ()),
    ("pedcc", "n_form", "log", ()),
    ("am", "scale", "0", ()),
    ("am", "margin", "2.5", ()),
    ("arc", "margin", "-0.5", ()),
    ("arc", "scale", "-30", ()),
    ("cm", "scale", "0", ()),
    ("cm", "m1", "0", ()),
    ("cm", "m2", "3.2", ()),
    ("cm", "m3", "-0.1", ()),
    ("mml", "scale", "0", ()),
    ("mml", "angular_margin", "4", ()),
    ("mml", "cosine_margin", "2", ()),
    ("asl", "m", "2.5", ()),
    ("asl", "base", "-1", ()),
    ("asl", "gamma", "-1", ()),
    ("asl", "power", "-1", ()),
    ("asl", "lambda_min", "-1", ()),
    ("asl", "backward", "autograd", ()),
    ("er", "lam", "-1", ()),
    ("er", "refresh_every", "0", ()),
    ("er", "scale", "0", ()),
    ("er", "m1", "-1", ()),
    ("er", "m2", "4", ()),
    ("er", "m3", "2", ()),
    ("magface", "scale", "0", ()),
    ("magface", "l_a", "0", ()),
    ("magface", "u_a", "5", ()),
    ("magface", "l_m", "-0.1", ()),
    ("magface", "u_m", "0.3", ()),
    ("magface", "lambda_g", "-1", ()),
    ("magface", "easy_margin", "maybe", ()),
    ("hl_official_detection", "radius", "0", ()),
    ("hl_official_detection", "alpha", "-1", ()),
    ("hl_official_detection", "rho", "1.5", ()),
    ("hl_official_detection", "lam", "-1", ()),
    ("hl_official_detection", "phi", "1.0", ()),
    ("hl_official_detection", "beta", "-0.1", ()),
    ("hl_official_detection", "warmup_epochs", "-1", ()),
    ("hl_official_detection", "chain", "epoch", ()),
    ("hl_official_detection", "bias", "maybe", ()),
    ("hl_official_detection", "init_std", "0", ()),
    ("hl", "radius", "0", ()),
    ("hl", "epsilon", "1.5", ()),
    ("hl", "phi", "1.0", ()),
    ("hl", "lam", "-1", ()),
    ("hl", "beta", "-0.1", ()),
    ("hl", "warmup_epochs", "-1", ()),
    ("hl", "warmup_epochs", "2.5", ()),
    ("hl", "generalized", "maybe", ()),
    ("hl", "separation", "maybe", ()),
    ("hl", "center_update", "weekly", ()),
    ("hl", "update_every", "0", ()),
    ("hl", "update_every", "10", ("loss.center_update=epoch",)),
    ("hl", "warmup_epochs", "0", ("loss.center_update=dataset",)),
    ("hl", "official.bias_correction", "maybe", ()),
    ("hl", "official.penalty_power", "3", ()),
    ("hl", "official.penalty_normalization", "x", ()),
    ("hl", "official.ramp_lambda", "maybe", ()),
    ("hl", "official.ramp_beta", "maybe", ()),
    ("hl", "official.total_epochs", "0", ()),
    ("hl", "official.total_epochs", "null", ("loss.official.ramp_beta=true",)),
    ("hl", "official.normalize_weight", "maybe", ()),
    ("hl", "official.bias", "maybe", ()),
    ("hl", "official.classifier_weight_decay", "-1", ()),
    ("hl", "official.lambda_ramp_lags", "maybe", ()),
    ("hl", "official.feature_radius_factor", "0", ()),
    ("hl", "official.feature_radius_factor", "1.5", ()),
    ("hl", "official.absent_class_center", "drop", ()),
]


@pytest.mark.parametrize("loss,key,value,extra", CASES, ids=[f"{c[0]}-{c[1]}={c[2]}" for c in CASES])
def test_a_bad_value_names_the_key_and_the_value(loss, key, value, extra):
    cfg = compose_config([f"loss={loss}", f"loss.{key}={value}", *extra])
    given = OmegaConf.select(cfg.loss, key)
    kwargs = OmegaConf.to_container(cfg.loss, resolve=True)
    cls = get_class(kwargs.pop("_target_"))
    with pytest.raises(ConfigError) as err:
        cls(num_classes=10, feat_dim=32, **kwargs)
    message = str(err.value)
    assert message.startswith(f"{key} must be "), message
    assert message.endswith(f"got {given!r}"), message


def _keys(node: dict, prefix: str = "") -> set[str]:
    """Every leaf key of a loss config, nested ones as ``official.penalty_power``."""
    out = set()
    for key, value in node.items():
        if key != "_target_":
            out |= _keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
    return out


def test_every_parameter_of_every_loss_has_a_case():
    """The table above covers every key of every loss YAML that names a class (presets only set its keys)."""
    covered = {(loss, key) for loss, key, _, _ in CASES}
    bases = {name for name in config_options("loss") if "_target_" in OmegaConf.load(f"{CONFIG_DIR}/loss/{name}.yaml")}
    assert bases == {loss for loss, *_ in CASES}
    for loss in bases:
        keys = _keys(OmegaConf.to_container(compose_config([f"loss={loss}"]).loss, resolve=True))
        assert not {k for k in keys if (loss, k) not in covered}, loss

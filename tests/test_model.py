"""The model family: scaling rule, table, shapes, parameter counts, FLOPs, seeding, bad input."""

import math
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import zoo
from zoo.model import MBConv

BASE = [(1, 16, 1), (6, 24, 2), (6, 40, 2), (6, 80, 3), (6, 112, 3), (6, 192, 4), (6, 320, 1)]


def rule_round(c, w):
    """The DESIGN rule, re-derived independently with exact decimals."""
    v = Decimal(str(c)) * Decimal(str(w))
    r = max(8, int((v / 8).quantize(Decimal(1), rounding=ROUND_HALF_UP)) * 8)
    return r + 8 if r < Decimal("0.9") * v else r


def rule_repeats(r, d):
    return max(1, math.ceil(Decimal(r) * Decimal(str(d))))


@pytest.mark.parametrize("name", list(zoo.VARIANTS))
def test_every_variant_follows_the_scaling_rule(name):
    v = zoo.VARIANTS[name]
    cfg = zoo.variant_config(name)
    assert cfg.stem_dim == rule_round(32, v.width)
    assert cfg.head_dim == rule_round(1280, v.width)
    assert [(s.expand_ratio, s.dim, s.repeats) for s in cfg.stages] == [
        (e, rule_round(c, v.width), rule_repeats(r, v.depth)) for e, c, r in BASE
    ]
    assert v.input_dim == rule_round(Decimal(256) * v.resolution / 224, 1)


def test_canonical_rows_b3_and_b7():
    b3, b7 = zoo.variant_config("dense_b3"), zoo.variant_config("dense_b7")
    assert (b3.stem_dim, b3.head_dim, b3.input_dim) == (40, 1536, 344)
    assert [(s.dim, s.repeats) for s in b3.stages] == [(24, 2), (32, 3), (48, 3), (96, 5), (136, 5), (232, 6), (384, 2)]
    assert (b7.stem_dim, b7.head_dim, b7.input_dim) == (64, 2560, 688)
    assert [(s.dim, s.repeats) for s in b7.stages] == [(32, 4), (48, 7), (80, 7), (160, 10), (224, 10), (384, 13), (640, 4)]
    assert [zoo.VARIANTS[f"dense_b{i}"].input_dim for i in range(8)] == [256, 272, 296, 344, 432, 520, 600, 688]


def test_round_filters_rounds_halves_up_and_adds_a_step_after_a_big_loss():
    assert zoo.round_filters(20, 1.0) == 24  # 2.5 steps: half rounds up (banker's would give 16)
    assert zoo.round_filters(16, 1.2) == 24  # 19.2 -> 16 loses 17 %, so +8
    assert zoo.round_filters(1, 1.0) == 8


@pytest.mark.parametrize("flavor,expected", [("paper", 3_845_670), ("edifice", 9_434_206)])
def test_b0_parameter_count(flavor, expected):
    m = zoo.build(input_dim=256, num_classes=10, flavor=flavor)
    assert zoo.count_params(m) == expected == m.config.params()


@pytest.mark.parametrize("flavor", zoo.FLAVORS)
@pytest.mark.parametrize("name", list(zoo.VARIANTS))
def test_analytic_params_and_flops_match_the_built_model(name, flavor):
    cfg = zoo.variant_config(name, num_classes=10, flavor=flavor, input_dim=64)
    m = zoo.DenseEfficientNet(cfg).eval()
    assert cfg.params() == sum(p.numel() for p in m.parameters() if p.requires_grad)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        m(torch.zeros(1, 64))
    assert cfg.flops() == counter.get_total_flops()


@pytest.mark.parametrize("flavor", zoo.FLAVORS)
def test_output_shapes_with_and_without_classifier(flavor):
    x = torch.randn(5, 48)
    with_cls = zoo.build(input_dim=48, num_classes=7, flavor=flavor, width_multiplier=1.2).eval()
    without = zoo.build(input_dim=48, num_classes=None, flavor=flavor, width_multiplier=1.2).eval()
    assert with_cls(x).shape == (5, 7)
    assert without(x).shape == (5, zoo.output_size(width_multiplier=1.2))
    assert zoo.output_size(1.2) == 1536 and zoo.output_size(1.0, num_classes=7) == 7


@pytest.mark.parametrize("flavor", zoo.FLAVORS)
def test_residual_exactly_when_widths_match(flavor):
    m = zoo.create("dense_b1", flavor=flavor)
    blocks = [b for b in m.blocks if isinstance(b, MBConv)]
    assert blocks and all(b.has_residual == (b.in_dim == b.out_dim) for b in blocks)
    assert any(b.has_residual for b in blocks) and any(not b.has_residual for b in blocks)
    # A residual block is the identity when its branch is zeroed; a non-residual one is not.
    block = next(b for b in blocks if b.has_residual)
    with torch.no_grad():
        block.project[0].weight.zero_()
        if flavor == "paper":
            block.project[1].weight.zero_()
            block.project[1].bias.zero_()
        else:
            block.project[1].weight.zero_()
            block.project[1].bias.zero_()
        x = torch.randn(4, block.in_dim)
        assert torch.equal(block.eval()(x), x)


def test_submodules_are_named_expand_transform_se_project():
    b = zoo.mbconv_block(16, 24, expand_ratio=6)
    assert {"expand", "transform", "se", "project"} <= {n for n, _ in b.named_children()}
    assert b.se.reduce.out_features == 4  # max(1, int(16 * 0.25)), from the block input
    e = zoo.mbconv_block(16, 24, expand_ratio=6, flavor="edifice")
    assert e.se.reduce.out_features == 36  # round(24 * 6 * 0.25), from the block output
    assert e.expand[0].out_features == 144


def test_eval_is_deterministic_and_train_applies_stochastic_depth():
    m = zoo.create("dense_b0")
    x = torch.randn(64, 256)
    with torch.no_grad():
        assert torch.equal(m(x), m(x))
    block = zoo.mbconv_block(32, 32, expand_ratio=6, drop_rate=0.5).train()
    torch.manual_seed(0)
    xb = torch.randn(256, 32)
    with torch.no_grad():
        y = block(xb)
    dropped = torch.isclose(y, xb).all(dim=1)
    # About half of the samples skip the branch entirely (output == input)...
    assert 0.3 < dropped.float().mean().item() < 0.7
    # ...and the drop rates grow linearly with depth, 0.2 * k / N.
    rates = [b.drop_rate for b in zoo.create("dense_b0").blocks]
    assert rates[0] == 0 and rates == sorted(rates) and math.isclose(rates[-1], 0.2 * (len(rates) - 1) / len(rates))
    assert all(b.drop_rate == 0 for b in zoo.create("dense_b0", flavor="edifice").blocks)


def _state_hash(seed):
    code = (
        "import hashlib, zoo, torch;"
        f"m = zoo.create('dense_b1', seed={seed});"
        "h = hashlib.sha256();"
        "[h.update(t.numpy().tobytes()) for t in m.state_dict().values()];"
        "print(h.hexdigest())"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={"PYTHONHASHSEED": str(seed + 11), "PATH": "/usr/bin:/bin"}).stdout.strip()


def test_seeded_weights_are_identical_across_processes():
    a, b = _state_hash(3), _state_hash(3)
    assert a == b and len(a) == 64
    assert _state_hash(4) != a


def test_compound_scaling():
    v = zoo.compound(phi=0)
    assert (v.width, v.depth, v.resolution, v.input_dim) == (1.0, 1.0, 224, 256)
    v2 = zoo.compound(phi=2)
    assert math.isclose(v2.depth, 1.2**2) and math.isclose(v2.width, 1.1**2)
    assert v2.resolution == round(224 * 1.15**2)
    assert math.isclose(v2.flops_factor, (1.2 * 1.1**2 * 1.15**2) ** 2)
    assert 1.8 < zoo.compound(phi=1).flops_factor < 2.1
    # Measured FLOPs grow by roughly the factor (widths round to multiples of 8).
    f0 = zoo.variant_config(zoo.compound(0)).flops()
    f2 = zoo.variant_config(zoo.compound(2)).flops()
    assert 0.6 * v2.flops_factor < f2 / f0 < 1.4 * v2.flops_factor


@pytest.mark.parametrize(
    "call,words",
    [
        (lambda: zoo.create("dense_b9"), "dense_b0, dense_b1"),
        (lambda: zoo.build(width_multiplier=0), "width must be a positive number"),
        (lambda: zoo.build(depth_multiplier=-1), "depth must be a positive number"),
        (lambda: zoo.build(input_dim=0), "input_dim must be a positive integer"),
        (lambda: zoo.build(flavor="resnet"), "unknown flavor 'resnet'"),
        (lambda: zoo.compound(phi=-1), "phi must be"),
        (lambda: zoo.create("dense_b0", seed=-1), "seed must be"),
    ],
)
def test_bad_input_raises_value_error(call, words):
    with pytest.raises(ValueError, match=words):
        call()


def test_public_names_survive_importing_every_submodule():
    """A submodule named like a public function (``zoo/build.py``) would replace ``zoo.build`` with
    itself as soon as anything imported it; every public name must stay what DESIGN says."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(zoo.__path__):
        if info.name != "__main__":
            importlib.import_module(f"zoo.{info.name}")
    for name in ("build", "output_size", "mbconv_block", "squeeze_excitation", "create", "compound"):
        assert callable(getattr(zoo, name)), name
    assert isinstance(zoo.build(input_dim=16, num_classes=3), torch.nn.Module)


# --- architecture options (the ablation study's networks) --------------------------------------

OPTION_NAMES = ["dense_b0_nose", "dense_b0_relu", "dense_b1_nose_relu", "resmlp_1x", "mlp_1x"]


@pytest.mark.parametrize("name", OPTION_NAMES)
def test_option_networks_params_and_flops_match_the_built_model(name):
    cfg = zoo.variant_config(zoo.get_variant(name), num_classes=10, input_dim=64)
    m = zoo.DenseEfficientNet(cfg).eval()
    assert cfg.params() == sum(p.numel() for p in m.parameters() if p.requires_grad)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        m(torch.zeros(1, 64))
    assert cfg.flops() == counter.get_total_flops()


def test_se_off_and_relu_change_only_what_they_name():
    from zoo.model import SqueezeExcitation

    base, nose, relu = (zoo.create(n, input_dim=64) for n in ("dense_b0", "dense_b0_nose", "dense_b0_relu"))
    kinds = {n: {type(m) for m in net.modules()} for n, net in (("b0", base), ("nose", nose), ("relu", relu))}
    assert SqueezeExcitation in kinds["b0"] and SqueezeExcitation not in kinds["nose"]
    assert torch.nn.SiLU in kinds["nose"] and torch.nn.ReLU not in kinds["nose"]
    assert torch.nn.ReLU in kinds["relu"] and torch.nn.SiLU not in kinds["relu"]
    # no SE: every other parameter is the same tensor of the same name; ReLU: the same state dict
    b, n = base.state_dict(), nose.state_dict()
    assert set(n) == {k for k in b if ".se." not in k} and all(torch.equal(n[k], b[k]) for k in n
                                                                 if "running" not in k)
    assert relu.state_dict().keys() == b.keys()
    # the default options are the default network, module for module (the build's bytes rest on it)
    assert str(zoo.build(input_dim=64, se=True, activation="silu")) == str(zoo.build(input_dim=64))


@pytest.mark.parametrize("body,prefix", [("residual", "resmlp"), ("plain", "mlp")])
def test_baselines_are_sized_to_b0_flops_by_the_analytic_counter(body, prefix):
    from zoo.model import Arch, ResidualBlock, SqueezeExcitation

    b0 = zoo.variant_config("dense_b0", num_classes=10).flops()
    for m in (1, 4):
        v = zoo.get_variant(f"{prefix}_{m}x")
        cfg = zoo.variant_config(v, num_classes=10)
        assert v.arch.body == body and v.arch.width % 8 == 0 and not v.arch.se
        assert abs(cfg.flops() / b0 - m) < 0.01 * m, (m, cfg.flops() / b0)
        # one width step narrower is further from the target (the width is the closest one)
        narrower = zoo.network_config(256, num_classes=10, arch=Arch(body, width=v.arch.width - 8,
                                                                    depth=v.arch.depth))
        assert abs(math.log(narrower.flops() / (m * b0))) >= abs(math.log(cfg.flops() / (m * b0)))
    net = zoo.create(f"{prefix}_1x", input_dim=64)
    kinds = {type(x) for x in net.modules()}
    assert SqueezeExcitation not in kinds and MBConv not in kinds
    assert (ResidualBlock in kinds) == (body == "residual")
    widths = {x.out_features for x in net.modules() if isinstance(x, torch.nn.Linear)}
    assert widths == {zoo.get_variant(f"{prefix}_1x").arch.width, 10}  # no expansion: one width, then the classes


@pytest.mark.parametrize("name,words", [
    ("dense_b0_nose_nose", "unknown variant"), ("dense_b9_relu", "unknown variant"),
    ("resmlp_0x", "multiplier must be a positive number"), ("mlp-4x", "unknown variant"),
])
def test_bad_option_names_are_value_errors(name, words):
    with pytest.raises(ValueError, match=words):
        zoo.get_variant(name)

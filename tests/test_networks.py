"""Trunks and MLPs: the ResNet34 is torchvision's layout, weights load by path, bad files fail clearly."""

import logging

import pytest
import torch

from mqe.agents import get_config
from mqe.networks import EnsembleMLP, MLP, ResNet34, TrunkWeightsError, make_trunk
from mqe.networks.resnet import load_resnet34_weights

# Facts about torchvision's resnet34: 218 state-dict entries (parameters and BatchNorm buffers,
# fc included) and 21,797,672 parameters. Conv layers have `.weight`; BatchNorm layers have
# weight/bias/running_mean/running_var/num_batches_tracked.
TORCHVISION_RESNET34_KEY_COUNT = 218
TORCHVISION_RESNET34_NUM_PARAMS = 21_797_672
BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_resnet34_keys() -> set[str]:
    keys = {"conv1.weight", "fc.weight", "fc.bias"} | {f"bn1.{s}" for s in BN_SUFFIXES}
    for stage, blocks in zip((1, 2, 3, 4), (3, 4, 6, 3)):
        for block in range(blocks):
            prefix = f"layer{stage}.{block}"
            keys |= {f"{prefix}.conv1.weight", f"{prefix}.conv2.weight"}
            keys |= {f"{prefix}.bn{i}.{s}" for i in (1, 2) for s in BN_SUFFIXES}
        if stage > 1:
            keys |= {f"layer{stage}.0.downsample.0.weight"} | {f"layer{stage}.0.downsample.1.{s}" for s in BN_SUFFIXES}
    return keys


def image_config(trunk="resnet34", weights=None):
    config = get_config("mqe")
    config.update(trunk=trunk, trunk_weights=weights, small_conv_channels=(8, 16))
    return config


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    """A checkpoint laid out like torchvision's resnet34-*.pth (fc included), non-trivial BN stats."""
    torch.manual_seed(0)
    reference = ResNet34(num_classes=1000)
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / "resnet34-test.pth"
    torch.save(reference.state_dict(), path)
    return path, reference


def test_resnet34_state_dict_is_torchvision_layout():
    model = ResNet34(num_classes=1000)
    keys = set(model.state_dict())
    assert len(model.state_dict()) == TORCHVISION_RESNET34_KEY_COUNT
    assert keys == torchvision_resnet34_keys()
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_RESNET34_NUM_PARAMS
    trunk_keys = set(ResNet34().state_dict())  # the policy trunk drops the classifier
    assert trunk_keys == {k for k in keys if not k.startswith("fc.")}


def test_trunk_loads_weights_by_path_and_reproduces_outputs(torchvision_file):
    path, reference = torchvision_file
    trunk = make_trunk(image_config(weights=str(path)), ("image", 32)).eval()
    images = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    reference.fc = None  # compare pooled features
    reference.eval()
    x = images.permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.equal(trunk(images), reference(x))
    assert trunk(images).shape == (2, 512)


def test_checkpoint_without_batchnorm_counters_loads(tmp_path, torchvision_file):
    """Older torchvision files (saved before PyTorch 0.4.1) lack num_batches_tracked."""
    state = torch.load(torchvision_file[0], weights_only=True)
    old_style = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(old_style) == TORCHVISION_RESNET34_KEY_COUNT - 36  # one counter per BatchNorm
    path = tmp_path / "resnet34-old.pth"
    torch.save(old_style, path)
    model = ResNet34()
    load_resnet34_weights(model, path)
    assert torch.equal(model.layer4[2].bn2.running_var, state["layer4.2.bn2.running_var"])


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda sd: sd.pop("layer3.2.conv1.weight"), "missing 1 keys"),
        (lambda sd: sd.update({"layer5.0.conv1.weight": torch.zeros(1)}), "unexpected 1 keys"),
        (lambda sd: sd.update({"layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)}), "shape mismatch"),
    ],
)
def test_bad_weights_name_the_file_and_the_problem(tmp_path, torchvision_file, corrupt, message):
    state = torch.load(torchvision_file[0], weights_only=True)
    corrupt(state)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(TrunkWeightsError, match=message) as error:
        load_resnet34_weights(ResNet34(), path)
    assert str(path) in str(error.value)


def test_unreadable_or_unsafe_weights_files(tmp_path):
    with pytest.raises(TrunkWeightsError, match="no such file"):
        load_resnet34_weights(ResNet34(), tmp_path / "absent.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(TrunkWeightsError, match="garbage.pth"):
        load_resnet34_weights(ResNet34(), garbage)
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": ResNet34}, pickled)  # arbitrary objects are refused by weights_only
    with pytest.raises(TrunkWeightsError, match="pickled.pth"):
        load_resnet34_weights(ResNet34(), pickled)


def test_random_init_resnet_warns_loudly(caplog):
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        make_trunk(image_config(), ("image", 32))
    assert any("RANDOMLY INITIALISED" in record.message for record in caplog.records)


def test_small_conv_and_state_trunks():
    trunk = make_trunk(image_config("small_conv"), ("image", 32))
    assert trunk(torch.zeros(3, 32, 32, 3, dtype=torch.uint8)).shape == (3, 16)
    with pytest.raises(ValueError, match="uint8"):
        trunk(torch.zeros(3, 32, 32, 3))
    config = get_config("mqe")
    config["trunk"] = "mlp"
    identity = make_trunk(config, ("state", 5))
    states = torch.randn(4, 5)
    assert identity(states) is states and identity.out_dim == 5
    config["state_trunk_dims"] = (16, 8)
    mlp = make_trunk(config, ("state", 5))
    assert mlp(states).shape == (4, 8)
    with pytest.raises(ValueError, match=r"float \[B, 5\]"):
        mlp(torch.randn(4, 6))
    with pytest.raises(ValueError, match="does not fit image"):
        make_trunk(config, ("image", 32))
    with pytest.raises(ValueError, match="observation spec"):
        make_trunk(config, ("pixels", 32))


def test_mlp_layer_norm_structure():
    mlp = MLP(4, (8, 8), 3, layer_norm=True)
    kinds = [type(m).__name__ for m in mlp.net]
    assert kinds == ["Linear", "LayerNorm", "GELU", "Linear", "LayerNorm", "GELU", "Linear"]
    assert mlp(torch.randn(2, 4)).shape == (2, 3)


def test_ensemble_members_are_independent_mlps():
    torch.manual_seed(0)
    ensemble = EnsembleMLP(3, 4, (8,), 2, layer_norm=True)
    x = torch.randn(5, 4)
    out = ensemble(x)
    assert out.shape == (3, 5, 2)
    assert not torch.allclose(out[0], out[1])
    # member 1 computed by hand: Linear -> LayerNorm (member affine) -> GELU -> Linear
    lin1, ln, _, lin2 = ensemble.net
    h = x @ lin1.weight[1] + lin1.bias[1]
    h = torch.nn.functional.layer_norm(h, (8,)) * ln.weight[1] + ln.bias[1]
    expected = torch.nn.functional.gelu(h) @ lin2.weight[1] + lin2.bias[1]
    assert torch.allclose(out[1], expected, atol=1e-6)
    # per-member inputs [E, B, in] give the same result as the shared input
    assert torch.allclose(ensemble(x.expand(3, -1, -1)), out, atol=1e-6)
    # a gradient on one member's output reaches only that member's parameters
    ensemble(x)[2].sum().backward()
    assert lin1.weight.grad[:2].abs().sum() == 0 and lin1.weight.grad[2].abs().sum() > 0

import pytest
import torch

from farnetlib import BACKBONES, FARNet, build_backbone, farnet
from farnetlib.backbones import load_imagenet_state_dict

REQUIRED = {"densenet121", "densenet161", "densenet169", "densenet201", "resnet18", "resnet34",
            "resnet50", "resnet101", "vgg16_bn", "vgg19_bn", "efficientnet_b0"}


def test_required_backbones_listed():
    assert REQUIRED <= set(BACKBONES)


@pytest.mark.parametrize("name", sorted(REQUIRED | {"efficientnet_b3"}))
def test_both_outputs_have_expected_shapes(name):
    model = FARNet(5, backbone=name, head_scale=0.125).eval()  # shapes do not depend on the decoder's width
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 96))
    assert out.coarse.shape == (2, 5, 32, 48)
    assert out.fine.shape == (2, 5, 64, 96)
    assert torch.isfinite(out.fine).all()


def test_densenet121_taps_match_the_paper_channels():
    bb = build_backbone("densenet121")
    assert bb.channels == (64, 256, 512, 1024, 1024)


def test_full_width_farnet_has_the_reference_parameter_count_and_tests_use_a_narrow_decoder():
    """head_scale=1 (the paper) is the network the original code's forward uses (61.2 M parameters
    with densenet121, its redundant conv biases before BatchNorm aside); the engine tests' 1/8-width
    decoder keeps the backbone and shrinks only the aggregation and refinement widths."""
    from farnetlib.model import architecture_parameter_counts as counts  # built on the meta device: no memory

    assert counts(19, backbone="densenet121")["total"] == 61_210_470
    full, narrow = counts(19, backbone="resnet18"), counts(19, backbone="resnet18", head_scale=0.125)
    assert full["total"] == 62_729_766 and narrow["total"] == 12_265_046
    assert full["backbone"] == narrow["backbone"]


def test_gradients_reach_the_first_backbone_layer():
    model = FARNet(3, backbone="densenet121", head_scale=0.125)
    out = model(torch.randn(1, 3, 64, 64))
    (out.fine.mean() + out.coarse.mean()).backward()
    grad = model.backbone.features.conv0.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert model.f0[0].weight.grad.abs().sum() > 0


def test_unknown_backbone_lists_known_ones():
    with pytest.raises(ValueError, match="densenet121.*resnet50"):
        FARNet(19, backbone="alexnet")


def test_input_not_multiple_of_32_fails():
    model = FARNet(2, backbone="resnet18", head_scale=0.125).eval()
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.zeros(1, 3, 60, 64))


def test_imagenet_weights_offline_uncached_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "hub" / "checkpoints")):
        load_imagenet_state_dict("resnet18", allow_download=False)


def test_imagenet_weights_load_from_torch_cache(tmp_path, monkeypatch):
    """A file placed in the torch cache is used (no download): we put a known state dict there."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    ref = torchvision.models.resnet18()
    torch.nn.init.constant_(ref.conv1.weight, 0.125)
    dest = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    dest.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), dest)
    model = farnet(2, backbone="resnet18", weights="imagenet", allow_download=False, head_scale=0.125)
    assert torch.all(model.backbone.conv1.weight == 0.125)


def test_weights_from_path_and_missing_path(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18()
    torch.nn.init.constant_(ref.conv1.weight, -0.5)
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    model = farnet(2, backbone="resnet18", weights=path, head_scale=0.125)
    assert torch.all(model.backbone.conv1.weight == -0.5)
    reference = ref.state_dict()
    loaded = model.backbone.state_dict()  # every tensor of the extractor, loaded after construction
    assert loaded and all(torch.equal(v, reference[k]) for k, v in loaded.items())
    with pytest.warns(DeprecationWarning, match="farnet"):  # the constructor's weights, kept for one release
        old = FARNet(2, backbone="resnet18", weights=path, head_scale=0.125)
    assert torch.all(old.backbone.conv1.weight == -0.5)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        farnet(2, backbone="resnet18", weights=tmp_path / "nope.pth", head_scale=0.125)


def test_the_architectures_parameter_count_needs_no_model_in_memory():
    """Reports count the parameters of older runs on the meta device: the same numbers as a built model."""
    from farnetlib.model import architecture_parameter_counts, parameter_counts

    built = parameter_counts(farnet(5, backbone="resnet18", head_scale=0.125, fine_head_width=16))
    assert architecture_parameter_counts(5, backbone="resnet18", head_scale=0.125, fine_head_width=16) == built
    assert built["backbone"] > 0 and built["head"] == built["total"] - built["backbone"]

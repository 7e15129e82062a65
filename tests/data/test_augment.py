"""Batched Keras-style augmentation: fill modes against scipy.ndimage, parameter ranges as Keras
defines them, flips, brightness, seeding, and the recipe's rescale and value checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from cnnlab.config import AugmentConfig, recipe_from_dict
from cnnlab.data.augment import BatchAugment, warp
from cnnlab.errors import CnnlabError

SCIPY_MODE = {"nearest": "nearest", "reflect": "reflect", "wrap": "grid-wrap",
              "constant": "grid-constant"}  # fmt: skip


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 4, c: int = 3, h: int = 12, w: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g).float()


def pixel_matrix(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """A normalised (2, 3) matrix back in pixel units about the image centre: D M D^-1, t * D."""
    half = torch.tensor([w / 2, h / 2], dtype=torch.float64)
    m = theta[:, :2].double() * half.view(2, 1) / half.view(1, 2)
    return torch.cat([m, (theta[:, 2].double() * half).view(2, 1)], 1)


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect", "wrap", "constant"])
def test_integer_shift_fills_like_keras(fill_mode):
    x = torch.arange(6.0).view(1, 1, 1, 6).expand(1, 1, 3, 6).contiguous()
    theta = torch.tensor([[[1.0, 0.0, -2 / 3], [0.0, 1.0, 0.0]]])  # content moves 2 px right
    out = warp(x, theta, fill_mode, cval=7.0)[0, 0, 1]
    expected = {"nearest": [0, 0, 0, 1, 2, 3], "reflect": [1, 0, 0, 1, 2, 3],
                "wrap": [4, 5, 0, 1, 2, 3], "constant": [7, 7, 0, 1, 2, 3]}[fill_mode]  # fmt: skip
    assert torch.allclose(out, torch.tensor(expected, dtype=torch.float32), atol=1e-3)


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect", "wrap", "constant"])
def test_random_affine_matches_scipy_ndimage(fill_mode):
    """Rotation, shear, zoom and shift together, checked pixel by pixel against scipy's
    affine_transform (order 1) with the same matrix: an independent implementation."""
    cfg = AugmentConfig(rotation_range=40, width_shift_range=0.2, height_shift_range=3,
                        shear_range=20, zoom_range=0.3, fill_mode=fill_mode, cval=50.0)  # fmt: skip
    x = images(3, 2, 20, 28)
    aug = BatchAugment(cfg)
    theta = aug.matrices(3, 20, 28, gen(5))
    out = warp(x, theta, fill_mode, cfg.cval)
    for i in range(3):
        p = pixel_matrix(theta[i], 20, 28).numpy()
        m_rc = p[:2, :2][::-1, ::-1]  # (x, y) -> (row, col)
        t_rc = p[:, 2][::-1]
        centre = np.array([(20 - 1) / 2, (28 - 1) / 2])
        offset = centre - m_rc @ centre + t_rc
        for ch in range(2):
            ref = ndimage.affine_transform(x[i, ch].numpy().astype(np.float64), m_rc, offset,
                                           order=1, mode=SCIPY_MODE[fill_mode], cval=cfg.cval)  # fmt: skip
            assert np.abs(out[i, ch].numpy() - ref).max() < 0.05


def test_shift_ranges_are_fractions_below_one_and_pixels_from_one():
    aug = BatchAugment(AugmentConfig(width_shift_range=0.25, height_shift_range=3.0))
    theta = aug.matrices(4000, 30, 40, gen())
    tx = theta[:, 0, 2] * 20  # back to pixels (half width 20)
    ty = theta[:, 1, 2] * 15
    assert tx.abs().max() <= 10 + 1e-9 and tx.abs().max() > 9.9  # 0.25 x 40 px
    assert ty.abs().max() <= 3 + 1e-9 and ty.abs().max() > 2.95  # 3 px
    assert abs(float(tx.mean())) < 0.5  # symmetric


def test_rotation_zoom_and_shear_ranges():
    n = 3000
    rot = BatchAugment(AugmentConfig(rotation_range=30)).matrices(n, 32, 32, gen())
    angle = torch.rad2deg(torch.atan2(rot[:, 1, 0], rot[:, 0, 0]))
    assert angle.abs().max() <= 30 + 1e-6 and angle.abs().max() > 29.5
    zoom = BatchAugment(AugmentConfig(zoom_range=0.2)).matrices(n, 32, 32, gen())
    zx, zy = zoom[:, 0, 0], zoom[:, 1, 1]
    assert zx.min() >= 0.8 - 1e-9 and zx.max() <= 1.2 + 1e-9
    assert abs(float(torch.corrcoef(torch.stack([zx, zy]))[0, 1])) < 0.1  # drawn independently
    sh = BatchAugment(AugmentConfig(shear_range=20)).matrices(n, 32, 32, gen())
    # Keras's shear: x_in = cos(s) x, y_in = y - sin(s) x
    s = torch.asin(-sh[:, 1, 0])
    assert torch.allclose(sh[:, 0, 0], torch.cos(s)) and torch.allclose(
        sh[:, 1, 1], torch.ones(n, dtype=sh.dtype)
    )
    assert torch.all(sh[:, 0, 1] == 0) and torch.rad2deg(s).abs().max() <= 20 + 1e-6


def test_quarter_turn_is_an_exact_rotation():
    x = images(2, 3, 10, 10)
    theta = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]]).expand(2, 2, 3)
    out = warp(x, theta, "nearest")
    assert any(torch.allclose(out, torch.rot90(x, k, (2, 3)), atol=1e-3) for k in (1, 3))


def test_constant_fill_shows_in_the_corners_of_a_45_degree_turn():
    x = torch.full((1, 1, 21, 21), 200.0)
    c = math.cos(math.pi / 4)
    theta = torch.tensor([[[c, -c, 0.0], [c, c, 0.0]]])
    out = warp(x, theta, "constant", cval=123.0)[0, 0]
    assert out[0, 0] == pytest.approx(123.0, abs=1e-3) and out[10, 10] == pytest.approx(200.0)


def test_flips_and_brightness():
    x = images(64, 3, 8, 8).clamp(1, 200)
    out = BatchAugment(AugmentConfig(horizontal_flip=True))(x, gen())
    same = [torch.equal(out[i], x[i]) for i in range(64)]
    mirrored = [torch.equal(out[i], x[i].flip(2)) for i in range(64)]
    assert all(a or b for a, b in zip(same, mirrored, strict=True))
    assert 10 < sum(mirrored) < 54
    vflip = BatchAugment(AugmentConfig(vertical_flip=True, width_shift_range=1e-9))(x, gen())
    assert all(torch.allclose(vflip[i], x[i], atol=1e-3) or torch.allclose(vflip[i], x[i].flip(1), atol=1e-3)
               for i in range(64))  # fmt: skip
    half = BatchAugment(AugmentConfig(brightness_range=[0.5, 0.5]))(x, gen())
    assert torch.allclose(half, x * 0.5)
    double = BatchAugment(AugmentConfig(brightness_range=[2.0, 2.0]))(x, gen())
    assert double.max() == 255 and torch.allclose(double, (x * 2).clamp(max=255))


BRIEF = AugmentConfig(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
                      shear_range=0.2, zoom_range=0.2, horizontal_flip=True, fill_mode="nearest")  # fmt: skip


def test_seeded_reproducible_and_different_per_image():
    x = images(1, 3, 24, 24).expand(8, 3, 24, 24).contiguous()
    aug = BatchAugment(BRIEF)
    a, b = aug(x.clone(), gen(1)), aug(x.clone(), gen(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, aug(x.clone(), gen(2)))
    assert all(not torch.allclose(a[0], a[i]) for i in range(1, 8))  # one draw per image
    assert torch.isfinite(a).all() and a.min() >= 0 and a.max() <= 255


def test_identity_when_nothing_is_enabled():
    x = images()
    assert BatchAugment(AugmentConfig())(x, gen()) is x


def test_rescale_is_normalize_unit_and_values_are_checked():
    r = recipe_from_dict({"augment": {"rescale": "1./255"}})
    assert r.data.normalize == "unit"
    assert recipe_from_dict({"augment": {"rescale": 1 / 255}}).data.normalize == "unit"
    with pytest.raises(CnnlabError, match="only 1/255"):
        recipe_from_dict({"augment": {"rescale": 0.5}})
    with pytest.raises(CnnlabError, match="disagree"):
        recipe_from_dict({"augment": {"rescale": "1/255"}, "data": {"normalize": "imagenet"}})
    for bad, match in [({"zoom_range": 1.0}, "zoom_range"), ({"rotation_range": -5}, "rotation_range"),
                       ({"brightness_range": [1.2, 0.8]}, "brightness_range"), ({"cval": 300}, "cval")]:  # fmt: skip
        with pytest.raises(CnnlabError, match=match):
            recipe_from_dict({"augment": bad})


def test_fast_affine_grid_equals_torch():
    import torch.nn.functional as F

    from cnnlab.data.augment import affine_grid

    theta = BatchAugment(BRIEF).matrices(5, 17, 23, gen()).float()
    expected = F.affine_grid(theta, [5, 1, 17, 23], align_corners=False)
    assert torch.allclose(affine_grid(theta, 17, 23), expected, atol=1e-6)


def test_gamma_and_contrast_are_exact_at_a_fixed_draw():
    x = images(3, 1, 10, 10)
    out = BatchAugment(AugmentConfig(gamma_range=[2.0, 2.0]))(x.clone(), gen())
    assert torch.allclose(out, 255 * (x / 255) ** 2, atol=1e-3)
    mid = torch.full((2, 1, 8, 8), 128.0)
    mid[:, :, :4] = 96.0  # mean 112, deviations +-16: nothing clipped
    out = BatchAugment(AugmentConfig(contrast_range=[0.5, 0.5]))(mid.clone(), gen())
    assert torch.allclose(out.mean(dim=(1, 2, 3)), mid.mean(dim=(1, 2, 3)))
    assert torch.allclose(out - 112.0, (mid - 112.0) / 2)


def test_blur_matches_torchvision_and_each_image_gets_its_own_sigma():
    from torchvision.transforms.v2.functional import gaussian_blur as tv_blur

    from cnnlab.data.augment import gaussian_blur

    x = images(2, 1, 24, 24)
    out = gaussian_blur(x, torch.tensor([1.5, 0.0]))
    ref = tv_blur(x[:1], kernel_size=[11, 11], sigma=[1.5, 1.5])  # radius 5 = ceil(3 * 1.5)
    assert torch.allclose(out[:1, :, 6:-6, 6:-6], ref[:, :, 6:-6, 6:-6], atol=1e-3)  # edges differ
    assert torch.allclose(out[1], x[1], atol=1e-3)  # sigma 0: the image itself
    flat = torch.full((1, 1, 9, 9), 77.0)
    assert torch.allclose(gaussian_blur(flat, torch.tensor([2.0])), flat)


def test_noise_and_the_acquisition_draws_are_seeded_and_bounded():
    cfg = AugmentConfig(contrast_range=[0.7, 1.3], gamma_range=[0.6, 1.6], blur=1.0, noise=8.0)
    x = images(6, 1, 32, 32)
    a = BatchAugment(cfg)(x.clone(), gen(3))
    assert torch.equal(a, BatchAugment(cfg)(x.clone(), gen(3)))  # same seed, same images
    assert not torch.equal(a, BatchAugment(cfg)(x.clone(), gen(4)))
    assert a.min() >= 0 and a.max() <= 255 and not torch.equal(a, x)
    flat = torch.full((50, 1, 32, 32), 128.0)
    noisy = BatchAugment(AugmentConfig(noise=8.0))(flat.clone(), gen())
    stds = (noisy - 128).std(dim=(1, 2, 3))
    assert stds.max() <= 8.0 * 1.1 and stds.min() < 4 < stds.max()  # std drawn from [0, 8]


@pytest.mark.parametrize(
    "bad",
    [{"contrast_range": [0.0, 1.2]}, {"gamma_range": [1.5, 0.8]}, {"blur": -1.0}, {"noise": 500.0}],
)
def test_acquisition_values_are_checked(bad):
    with pytest.raises(CnnlabError, match="augment\\.(contrast_range|gamma_range|blur|noise)"):
        recipe_from_dict({"augment": bad})


def test_alternating_flip_shows_every_image_both_ways_in_any_two_epochs():
    aug = BatchAugment(AugmentConfig(horizontal_flip="alternate"))
    x, idx = images(n=64), torch.arange(64)

    def mirrored(out: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        flip = torch.tensor([torch.equal(o, s.flip(-1)) for o, s in zip(out, src, strict=True)])
        kept = torch.tensor([torch.equal(o, s) for o, s in zip(out, src, strict=True)])
        assert bool((flip ^ kept).all())  # each image is shown as it is or mirrored
        return flip

    m0 = mirrored(aug(x, gen(0), idx, 0), x)
    m1 = mirrored(aug(x, gen(1), idx, 1), x)
    assert bool((m0 ^ m1).all()) and 16 < int(m0.sum()) < 48
    assert torch.equal(mirrored(aug(x, gen(7), idx, 2), x), m0)  # the draw plays no part
    perm = torch.randperm(64, generator=gen(3))  # the mask follows the image, not its place
    assert torch.equal(mirrored(aug(x[perm], gen(0), idx[perm], 0), x[perm]), m0[perm])
    affine = BatchAugment(AugmentConfig(horizontal_flip="alternate", width_shift_range=1e-6))
    torch.testing.assert_close(affine(x, gen(0), idx, 1), aug(x, gen(0), idx, 1), atol=0.05, rtol=0)
    with pytest.raises(CnnlabError, match="horizontal_flip"):
        recipe_from_dict({"augment": {"horizontal_flip": "sometimes"}})

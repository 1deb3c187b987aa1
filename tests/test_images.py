"""Seed-compatible images: Stage 0 and Stage 2 steps against slow references, and
objective properties shared with the published Llaima images."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image
from scipy.signal import butter, sosfiltfilt
from scipy.spatial import cKDTree

from engine import images as im
from kernels.superlet_reference import ref_box_sum

FS = 100.0
LUT255 = im.jet(256) * 255.0
JET_TREE = cKDTree(LUT255)


def synth(kind: str, seed: int, n: int = 3000) -> np.ndarray:
    """LP-like (emergent 1-4 Hz, decaying) or VT-like (impulsive 5-15 Hz) event,
    band-passed 1-10 Hz like the Llaima traces."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    band = [1.0, 4.0] if kind == "LP" else [5.0, 15.0]
    src = sosfiltfilt(butter(4, band, btype="band", fs=FS, output="sos"), rng.standard_normal(n))
    if kind == "LP":
        env = np.clip((t - 3) / 4, 0, 1) * np.exp(-np.clip(t - 7, 0, None) / 8)
    else:
        env = (t > 3) * np.exp(-np.clip(t - 3, 0, None) / 3)
    x = 20 * src * env + 0.05 * rng.standard_normal(n)
    return sosfiltfilt(butter(4, [1.0, 10.0], btype="band", fs=FS, output="sos"), x)


def jet_index(img: np.ndarray) -> np.ndarray:
    """Invert the colouring: nearest jet(256) entry of each pixel (and the distance)."""
    dist, idx = JET_TREE.query(img.reshape(-1, 3).astype(np.float64))
    return idx.reshape(img.shape[:2]), dist.reshape(img.shape[:2])


@pytest.fixture(scope="module")
def synthetic_images() -> dict:
    tr = {"LP": synth("LP", 1), "VT": synth("VT", 2)}
    ims = im.event_images(list(tr.values()), show_progress=False)
    return dict(zip(tr, ims))


# ---------------------------------------------------------------- Stage 0
def test_default_freqs_are_matlab_colon():
    f = im.DEFAULT_FREQS
    assert len(f) == 121 and f[0] == 1.0 and f[-1] == 25.0 and f[60] == 13.0
    k = np.arange(60)
    assert np.array_equal(f[k], 1.0 + k * 0.2)
    assert np.array_equal(f[120 - k], 25.0 - k * 0.2)


def _end_loop(s):
    """The MATLAB loop of generacionLlaimaSuperlets.m, 0-based."""
    for j in range(len(s) - 4):
        if s[j] == s[j + 1] == s[j + 2] == s[j + 3] == s[j + 4]:
            return j
    return len(s) - 1


def test_end_of_event_matches_matlab_loop():
    rng = np.random.default_rng(0)
    cases = [rng.standard_normal(100), np.r_[rng.standard_normal(50), np.full(50, 0.3)],
             np.r_[rng.standard_normal(20), np.full(4, 1.0), rng.standard_normal(20)],
             np.full(30, 2.0), np.array([1.0, 2.0]),
             np.r_[rng.standard_normal(10), np.full(5, 7.0), rng.standard_normal(5)]]
    for c in cases:
        assert im.end_of_event(c) == _end_loop(c)
    x = np.r_[rng.standard_normal(50) + 3, np.full(50, -1.0)]
    p = im.prepare_trace(x)
    assert len(p) == 51 and abs(p.mean()) < 1e-12


def test_prepare_traces_equals_prepare_trace_per_trace():
    rng = np.random.default_rng(3)
    cases = [rng.standard_normal(100) * 1e3 + 7, np.r_[rng.standard_normal(50), np.zeros(50)],
             np.r_[rng.standard_normal(40), np.zeros(3)],  # ends in zeros: padding must not
             np.r_[rng.standard_normal(20), np.full(4, 1.0), rng.standard_normal(20)],  # cut it
             np.full(30, 2.0), np.array([1.0, 2.0]), np.array([3.0]),
             np.r_[rng.standard_normal(10), np.full(5, 7.0), rng.standard_normal(5)],
             rng.integers(-3, 3, 500).astype(np.int16)]
    for traces in (cases, [c[:37] for c in cases if len(c) >= 37]):
        x, lens = im.prepare_traces(traces)
        for i, t in enumerate(traces):
            want = im.prepare_trace(t)
            assert lens[i] == len(want) and np.array_equal(x[i, : lens[i]], want), i
            assert np.all(x[i, lens[i]:] == 0)
    block = rng.standard_normal((4, 300))
    block[1, 200:] = block[1, 199]
    x, lens = im.prepare_traces(block)
    assert lens.tolist() == [300, 200, 300, 300]
    for i in range(4):
        assert np.array_equal(x[i, : lens[i]], im.prepare_trace(block[i]))
    with pytest.raises(ValueError, match="trace 2 has a non-finite sample.*index 5"):
        block[2, 5] = np.nan
        im.prepare_traces(block)
    with pytest.raises(ValueError, match="trace 1 is empty"):
        im.prepare_traces([np.ones(3), np.zeros(0)])


@pytest.mark.parametrize("bad, match", [(np.zeros(0), "empty"), (np.r_[1.0, np.nan], "NaN"),
                                        (np.ones((3, 3)), "1-D")])
def test_prepare_trace_rejects_bad_traces(bad, match):
    with pytest.raises(ValueError, match=match):
        im.prepare_trace(bad)


# ---------------------------------------------------------------- Stage 2 steps
def test_jet_256_entries():
    j = im.jet(256)
    assert j.shape == (256, 3) and j.min() == 0 and j.max() == 1
    np.testing.assert_array_equal(j[0], [0, 0, 33 / 64])  # MATLAB jet(256)(1,:)
    np.testing.assert_array_equal(j[255], [0.5, 0, 0])
    np.testing.assert_array_equal(j[32], [0, 1 / 64, 1])
    np.testing.assert_array_equal(j[96], [1 / 64, 1, 63 / 64])
    np.testing.assert_array_equal(j[160], [1, 63 / 64, 0])
    # piecewise linear: steps of 0 or +-1/64 between neighbours
    steps = np.unique(np.round(np.diff(j, axis=0) * 64, 9))
    assert set(steps) <= {-1.0, 0.0, 1.0}
    np.testing.assert_allclose(im.jet(64)[0], [0, 0, 0.5625])  # the old 64-colour default


def test_box_sum_matches_smoothed_n_loop():
    s = np.random.default_rng(0).standard_normal((25, 40))
    out = im.box_sum(s)
    assert out.shape == (14, 29)
    np.testing.assert_allclose(out, ref_box_sum(s), rtol=0, atol=1e-10)
    assert im.box_sum(np.zeros((121, 300))).shape == (110, 289)


def test_scale_to_uint8_rounds_up():
    s = np.array([[0.0, 1e-9, 0.5, 1.0]])
    assert im.scale_to_uint8(s).tolist() == [[0, 1, 128, 255]]
    assert im.scale_to_uint8(np.full((3, 3), 4.0)).max() == 0


def test_resize_matches_pil_bicubic_inside_and_keeps_constants():
    img = np.random.default_rng(0).random((110, 600))
    mine = im.resize_bicubic(img[:, :, None])[:, :, 0]
    # PIL uses the same Keys kernel (a = -0.5), centres and antialias stretch;
    # only the border handling differs (PIL clips, MATLAB mirrors)
    pil = np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize(
        (227, 227), Image.BICUBIC))
    assert np.abs(mine - pil)[3:-3, 3:-3].max() < 1e-6
    assert np.abs(mine - pil)[:3].max() > 1e-4  # the mirror boundary is really used
    np.testing.assert_allclose(im.resize_bicubic(np.full((110, 5989, 3), 0.3)), 0.3,
                               atol=1e-12)


def test_scalogram_to_image_matches_stepwise_reference():
    rng = np.random.default_rng(5)
    power = np.exp(rng.standard_normal((121, 60)))
    s = ref_box_sum(np.log10(power))
    s = s - s.min()
    idx = np.ceil(s / s.max() * 255).astype(np.uint8)
    rgb = im.resize_bicubic(im.jet(256)[idx])[::-1]
    want = np.floor(np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    got = im.scalogram_to_image(power)
    assert got.shape == (227, 227, 3) and got.dtype == np.uint8
    assert np.array_equal(got, want)


def test_zero_scalogram_and_constant_trace_give_uniform_jet0_image():
    with np.errstate(all="raise"):
        img = im.scalogram_to_image(np.zeros((121, 500)))
    assert np.all(img == [0, 0, 131])  # round(255 * 33/64)
    with pytest.warns(RuntimeWarning, match="trace 1"):
        out = im.event_images([synth("LP", 3, 1500), np.full(2000, 5.0)], show_progress=False)
    assert np.all(out[1] == [0, 0, 131]) and len(np.unique(out[0].reshape(-1, 3), axis=0)) > 50


def test_event_images_batches_equal_single_calls():
    tr = [synth("LP", 4, 1400), synth("VT", 5, 900), synth("LP", 6, 1100)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = im.event_images(tr, batch_size=2, show_progress=False)
    for i, t in enumerate(tr):
        one = im.event_images([t], show_progress=False)[0]
        diff = np.abs(one.astype(int) - batch[i].astype(int))
        assert diff.max() <= 3 and diff.mean() < 0.05  # float32 rounding at ceil steps


def test_event_images_on_cuda_match_cpu_or_say_what_to_install():
    tr = [synth("LP", 7, 1200), synth("VT", 8, 1000)]
    try:
        import cupy as cp
    except ImportError:  # this machine: a clear message naming the extra
        with pytest.raises(ImportError, match=r"microquake-engine\[gpu\]"):
            im.event_images(tr, device="cuda", show_progress=False)
        return
    try:
        n_dev = cp.cuda.runtime.getDeviceCount()
    except Exception:  # cupy without a driver
        n_dev = 0
    if n_dev == 0:
        pytest.skip("cupy is installed but no CUDA device is usable")
    gpu = im.event_images(tr, device="cuda", show_progress=False)
    cpu = im.event_images(tr, show_progress=False)
    assert isinstance(gpu, cp.ndarray) and gpu.shape == cpu.shape
    diff = np.abs(cp.asnumpy(gpu).astype(int) - cpu.astype(int))
    assert diff.max() <= 3 and diff.mean() < 0.05


def test_event_images_rejects_bad_input():
    with pytest.raises(ValueError, match="trace 1.*non-finite"):
        im.event_images([np.ones(100), np.r_[np.ones(50), np.inf]])
    with pytest.raises(ValueError, match="batch_size"):
        im.event_images([np.ones(100)], batch_size=0)
    with pytest.raises(ValueError, match="Nyquist"):
        im.event_images([np.ones(100)], freqs=np.linspace(1, 60, 20))


def test_write_images_per_class_folder(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (2, 227, 227, 3), dtype=np.uint8)
    paths = im.write_images(imgs, [1, 1311], ["LP", "VT"], tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["LP/1.png", "VT/1311.png"]
    back = np.asarray(Image.open(paths[1]))
    assert Image.open(paths[1]).mode == "RGB" and np.array_equal(back, imgs[1])
    assert not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(ValueError, match="label"):
        im.write_images(imgs[:1], [2], ["../x"], tmp_path)
    with pytest.raises(ValueError, match="length"):
        im.write_images(imgs, [1], ["LP"], tmp_path)


# ------------------------------------------------ properties of published images
def _published(shared_data, cls, n=25):
    files = sorted((shared_data / "llaima_sample" / cls).glob("*.png"))[:n]
    assert files, f"no published images for {cls}"
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def _darkest_blue(imgs):
    vals = [img[(img[..., 0] == 0) & (img[..., 1] == 0)][:, 2] for img in imgs]
    return min(int(v.min()) for v in vals if v.size)


def test_palette_and_dark_blue_match_published(shared_data, synthetic_images):
    pub = _published(shared_data, "LP") + _published(shared_data, "VT")
    ours = list(synthetic_images.values())
    # dark blue: the published images use jet(256) (entry 0 = 131, entry 2 = 139),
    # not the old jet(64) (entry 0 = 143)
    assert 131 <= _darkest_blue(pub) <= 139
    assert 131 <= _darkest_blue(ours) <= 139
    # colours lie on the jet palette (resizing mixes neighbouring entries only)
    for img in pub[:10] + ours:
        _, dist = jet_index(img)
        assert (dist < 12).mean() > 0.95


def test_low_frequencies_at_the_bottom_like_published(shared_data, synthetic_images):
    def bottom_minus_top(img):
        idx, _ = jet_index(img)
        return idx[-57:].mean() - idx[:57].mean()

    pub = _published(shared_data, "LP", 10) + _published(shared_data, "VT", 10)
    assert all(bottom_minus_top(p) > 50 for p in pub)
    lp, vt = synthetic_images["LP"], synthetic_images["VT"]
    assert bottom_minus_top(lp) > 50
    # LP energy (1-4 Hz) sits lower in the picture than VT energy (5-15 Hz)
    rows = np.arange(227)[:, None]
    def energy_row(img):
        idx, _ = jet_index(img)
        w = np.clip(idx.astype(float) - 128, 0, None)
        return float((w * rows).sum() / w.sum())
    assert energy_row(lp) > energy_row(vt) + 10


# ------------------------------------------------ batched Stage 2 vs the per-event path
@pytest.mark.parametrize("colormap", [True, False])
@pytest.mark.parametrize("size", [227, (64, 96)])
def test_batched_stage2_equals_per_event_reference(colormap, size):
    rng = np.random.default_rng(11)
    lens = np.array([300, 57, 12, 211])
    power = np.exp(3 * rng.standard_normal((4, 30, 300))).astype(np.float32)
    power[1, :, :20] = 0.0  # zero power: the per-event floor
    power[2] = 0.0  # no contrast at all
    # samples past each event's length hold garbage (as on the GPU): they must not matter
    got = im._images_batch(power, lens, np, im._image_size(size), colormap)  # xp path (GPU)
    fused = im._images_batch_cpu(power, lens, im._image_size(size), colormap)  # CPU kernel
    for b, n in enumerate(lens):
        want = im.scalogram_to_image(power[b, :, :n], size=size, colormap=colormap)
        assert got[b].shape == want.shape == fused[b].shape and got[b].dtype == np.uint8
        assert np.array_equal(got[b], want), f"array-module path, event {b}"
        assert np.array_equal(fused[b], want), f"fused CPU kernel, event {b}"
    assert len(np.unique(got[0])) > 20 and np.all(got[2] == got[2][:1, :1])


def test_event_images_equal_superlet_then_per_event_images():
    from engine.superlet import superlet

    tr = [synth("LP", 12, 1300), synth("VT", 13, 800), synth("LP", 14, 1050)]
    prep = [im.prepare_trace(t) for t in tr]
    power = superlet(prep, FS, im.DEFAULT_FREQS, allow_short=True)
    for colormap in (True, False):
        got = im.event_images(tr, batch_size=3, colormap=colormap, show_progress=False)
        for i, p in enumerate(power):
            assert np.array_equal(got[i], im.scalogram_to_image(p, colormap=colormap))


def test_event_images_grey_option_and_size():
    tr = [synth("LP", 15, 900), synth("VT", 16, 1000), np.full(500, 2.0)]
    with pytest.warns(RuntimeWarning, match="trace 2"):
        grey = im.event_images(tr, colormap=False, size=(32, 48), show_progress=False)
    assert grey.shape == (3, 32, 48) and grey.dtype == np.uint8
    assert np.all(grey[2] == 0) and grey[0].max() >= 200 and grey[0].min() <= 40
    with pytest.warns(RuntimeWarning):
        rgb = im.event_images(tr, size=40, show_progress=False)
    assert rgb.shape == (3, 40, 40, 3) and np.all(rgb[2] == [0, 0, 131])
    for bad in (0, (10,), (10, -1), "big", (2.5, 3)):
        with pytest.raises(ValueError, match="size"):
            im.event_images(tr[:1], size=bad)


def test_batch_resize_weights_equal_per_length_weights():
    lens = np.array([5989, 300, 227, 120, 40, 12])
    op = im._block_resize_operator(lens, 227, 6000, np)
    want = im._block_diag_csr([im._resize_weights(int(n), 227) for n in lens], 6000)
    assert op.shape == want.shape == (6 * 227, 6 * 6000)
    diff = abs(op - want)
    assert diff.max() < 1e-14 and np.array_equal(op.indptr, want.indptr)
    # the images made with them (the GPU default) stay within a colour level
    rng = np.random.default_rng(12)
    power = np.exp(3 * rng.standard_normal((3, 30, 400))).astype(np.float32)
    lens = np.array([400, 150, 90])
    a = im._images_batch(power, lens, np, (227, 227), True, batch_weights=True)
    b = im._images_batch(power, lens, np, (227, 227), True, batch_weights=False)
    d = np.abs(a.astype(int) - b.astype(int))
    assert d.max() <= 1 and (d > 0).mean() < 1e-3

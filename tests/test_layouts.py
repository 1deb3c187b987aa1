"""Feature layouts (engine.features.layouts) against slow, obvious references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.features.extractor import SqueezeNetExtractor
from engine.features.layouts import Part, layout_features, parse_layout, pool_part


def _bins(n: int, k: int) -> list[tuple[int, int]]:
    """Adaptive-pooling bins of an axis of n cells into k: [floor(i n/k), ceil((i+1) n/k))."""
    return [(math.floor(i * n / k), math.ceil((i + 1) * n / k)) for i in range(k)]


def _reference(act: np.ndarray, part: Part) -> np.ndarray:
    """Loop-by-loop pooling of one (n, C, h, w) activation as the docstring states."""
    n, c, h, w = act.shape
    if part.pool == "gap":
        return np.array([[act[i, ch].mean() for ch in range(c)] for i in range(n)])
    rows = {"grid": part.size, "time": 1, "freq": part.size or h}[part.pool]
    cols = {"grid": part.size, "time": part.size or w, "freq": 1}[part.pool]
    out = np.zeros((n, c * rows * cols))
    for i in range(n):
        j = 0
        for ch in range(c):
            for r0, r1 in _bins(h, rows):
                for c0, c1 in _bins(w, cols):
                    out[i, j] = act[i, ch, r0:r1, c0:c1].mean()
                    j += 1
    return out


@pytest.mark.parametrize("part", [Part("fire9", "gap"), Part("fire9", "grid", 2),
                                  Part("fire9", "grid", 3), Part("fire9", "time", 7),
                                  Part("fire9", "time", None), Part("fire9", "freq", 4),
                                  Part("fire9", "freq", None)])
@pytest.mark.parametrize("hw", [(13, 13), (14, 11)])
def test_pooling_matches_the_loop_reference(part, hw):
    act = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 5, *hw)).astype(np.float32))
    want = _reference(act.numpy(), part)
    np.testing.assert_allclose(pool_part(act, part).numpy(), want, rtol=1e-5, atol=1e-6)
    # the CPU extractor runs channels-last: same numbers in the same order
    cl = act.contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(pool_part(cl, part).numpy(), want, rtol=1e-5, atol=1e-6)


def test_a_layout_is_its_parts_concatenated_from_one_pass():
    images = np.random.default_rng(1).integers(0, 256, (3, 227, 227, 3), dtype=np.uint8)
    both = SqueezeNetExtractor(feature_layer="fire7_time7+fire9_grid2").fit().transform(images)
    a = SqueezeNetExtractor(feature_layer="fire7_time7").fit().transform(images)
    b = SqueezeNetExtractor(feature_layer="fire9_grid2").fit().transform(images)
    assert both.shape == (3, 384 * 7 + 512 * 4)
    np.testing.assert_allclose(both, np.hstack([a, b]), rtol=1e-5, atol=1e-6)
    # the old names keep their meaning
    gap = SqueezeNetExtractor(feature_layer="fire9_gap").fit().transform(images)
    grid1 = SqueezeNetExtractor(feature_layer="fire9_grid1").fit().transform(images)
    np.testing.assert_allclose(gap, grid1, rtol=1e-5, atol=1e-6)


def test_layout_features_takes_every_layer_from_one_forward(monkeypatch):
    ext = SqueezeNetExtractor(feature_layer="conv10").fit()
    calls = []
    real = ext.model_.forward_layers

    def spy(x, layers):
        calls.append(list(layers))
        return real(x, layers)

    monkeypatch.setattr(ext.model_, "forward_layers", spy)
    x = torch.zeros((1, 3, 227, 227))
    out = layout_features(ext.model_, x, parse_layout("fire7_time7+fire9_grid2+conv10"))
    assert calls == [["fire7", "fire9", "conv10"]]
    assert out.shape == (1, 384 * 7 + 512 * 4 + 5 * 14 * 14)


@pytest.mark.parametrize("spec, words", [
    ("fire9_grid", "grid needs a size"), ("bogus", "unknown layer"), ("fire10_gap", "fire10"),
    ("prob_time3", "cannot be pooled"), ("fire9_gap2", "gap takes no size"),
    ("fire9_gap+fire9_gap", "repeated part"), ("fire9_gap++conv10", "empty part"),
    ("fire9_grid0", "size of 0"), ("", "non-empty")])
def test_bad_layouts_are_refused_naming_the_part(spec, words):
    with pytest.raises(ValueError, match=words):
        parse_layout(spec)
    if spec:
        with pytest.raises(ValueError, match="feature_layer"):
            SqueezeNetExtractor(feature_layer=spec).fit()


def test_aliases_resolve_whole_and_pooled_parts():
    aliases = {"NuevaConv10": "conv10", "fire9-concat": "fire9"}
    parts = parse_layout("NuevaConv10+fire9-concat_grid2", aliases)
    assert [p.name for p in parts] == ["conv10", "fire9_grid2"]


def test_engine_default_is_the_pooled_layout():
    from engine.config import RunConfig
    from engine.features import make_featurizer
    from engine.features.superlet_cnn import DEFAULT_LAYOUT

    assert RunConfig().feature_layer == DEFAULT_LAYOUT == "fire7_time7+fire9_grid2"
    f = make_featurizer("superlet-cnn")
    assert f.feature_layer == DEFAULT_LAYOUT
    assert f.fingerprint()["layer"] == DEFAULT_LAYOUT


def test_main_job_refuses_a_bad_layout_before_reading_anything(tmp_path, capsys):
    from engine.run import main

    out = tmp_path / "run"
    assert main(["--feature-layer", "fire9_grid", "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert "feature_layer 'fire9_grid': grid needs a size K" in err
    assert not out.exists()

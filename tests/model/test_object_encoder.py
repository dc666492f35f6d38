"""The object encoder's mask and point maths (SPEC §2.5) against hand-derived answers and float64 references."""
from __future__ import annotations

import torch
from torch import nn

from tarvis_fast.model.object_encoder import (
    ObjectEncoder,
    PointSetAttention,
    background_point_sets,
    grid_cells,
    split_object_points,
    subsample,
)
from tarvis_fast.model.position import sine_embedding_2d


def test_grid_cells_of_an_8x8_image() -> None:
    # linspace(-0.499, 3.499, 8) rounds to [0, 0, 1, 1, 2, 2, 3, 3]: a 4x4 grid of 2x2-pixel cells.
    expected = torch.tensor([[(y // 2) * 4 + x // 2 for x in range(8)] for y in range(8)])
    assert torch.equal(grid_cells(8, 8, (4, 4)), expected)


def test_background_sets_leave_out_every_object() -> None:
    masks = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    masks[0, 0, 0:2, 0:2] = True  # covers cell 0 entirely
    masks[1, 0, 2:3, 2:3] = True  # one pixel of cell 5
    sets = background_point_sets(masks, (4, 4))
    assert len(sets) == 16
    assert sets[0].shape == (0, 3)
    assert sets[5].tolist() == [[0, 2, 3], [0, 3, 2], [0, 3, 3]]  # row-major (t, y, x)
    assert all(s.shape[0] == 4 for i, s in enumerate(sets) if i not in (0, 5))
    # without objects every cell is whole
    assert [s.shape[0] for s in background_point_sets(torch.zeros(0, 2, 8, 8, dtype=torch.bool), (4, 4))] == [8] * 16


def test_object_pixels_are_cut_into_contiguous_runs() -> None:
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 1:3, 0:4] = True
    mask[0, 3, 0:2] = True  # 10 pixels
    parts = split_object_points(mask, 4)
    assert [p.shape[0] for p in parts] == [3, 3, 2, 2]
    assert parts[0].tolist() == [[0, 1, 0], [0, 1, 1], [0, 1, 2]]
    assert parts[3].tolist() == [[0, 3, 0], [0, 3, 1]]


def test_small_objects_repeat_their_pixels() -> None:
    mask = torch.zeros(2, 3, 3, dtype=torch.bool)
    mask[0, 0, 0] = mask[1, 1, 1] = mask[1, 2, 2] = True  # 3 pixels, 8 parts: the list repeated 3 times (9)
    parts = split_object_points(mask, 8)
    assert [p.tolist() for p in parts[:2]] == [[[0, 0, 0], [1, 1, 1]], [[1, 2, 2]]]
    assert all(p.shape[0] >= 1 for p in parts) and sum(p.shape[0] for p in parts) == 9


def test_subsample_evenly_or_randomly() -> None:
    points = torch.arange(10)[:, None]
    assert subsample(points, 4, None, randomly=False)[:, 0].tolist() == [0, 2, 5, 7]
    chosen = subsample(points, 4, torch.Generator().manual_seed(0), randomly=True)[:, 0]
    assert len(set(chosen.tolist())) == 4
    assert subsample(points, 20, None, randomly=True) is points


def test_point_set_attention_equals_padded_multihead_attention() -> None:
    torch.manual_seed(0)
    attn = PointSetAttention(16, 4).double()
    nn.init.normal_(attn.in_proj_bias)
    sizes = [3, 1, 5]
    keys = [torch.randn(n, 16, dtype=torch.float64) for n in sizes]
    values = [torch.randn(n, 16, dtype=torch.float64) for n in sizes]
    query = torch.randn(3, 16, dtype=torch.float64)
    set_index = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    actual = attn(query, torch.cat(keys), torch.cat(values), set_index)

    reference = nn.MultiheadAttention(16, 4, batch_first=True).double()
    reference.load_state_dict(attn.state_dict())
    padded_k = nn.utils.rnn.pad_sequence(keys, batch_first=True)
    padded_v = nn.utils.rnn.pad_sequence(values, batch_first=True)
    padding = torch.arange(5)[None] >= torch.tensor(sizes)[:, None]
    expected = reference(query[:, None], padded_k, padded_v, key_padding_mask=padding, need_weights=False)[0][:, 0]
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


def test_point_set_attention_multiplicity_equals_repeated_points() -> None:
    """A point with multiplicity k gives what k copies of it give (the encoder merges the pixels of a set that
    share one feature cell this way)."""
    torch.manual_seed(0)
    attn = PointSetAttention(16, 4).double()
    keys, values = torch.randn(5, 16, dtype=torch.float64), torch.randn(5, 16, dtype=torch.float64)
    query = torch.randn(2, 16, dtype=torch.float64)
    set_index = torch.tensor([0, 0, 1, 1, 1])
    multiplicity = torch.tensor([3, 1, 2, 1, 4])
    repeated = torch.arange(5).repeat_interleave(multiplicity)
    expected = attn(query, keys[repeated], values[repeated], set_index[repeated])
    torch.testing.assert_close(attn(query, keys, values, set_index, multiplicity), expected, rtol=1e-12, atol=1e-12)


def test_initial_queries_are_means_and_samples() -> None:
    """With no refinement layers the encoder returns its initial queries: the mean mask feature of every
    background cell and sub-mask, and the PET MLP over the four maps' nearest samples (SPEC §2.5)."""
    torch.manual_seed(0)
    c = 8
    encoder = ObjectEncoder(dim=c, num_heads=2, num_layers=0, ffn_dim=16, bg_grid_size=(2, 2)).eval()
    pyramid = [torch.randn(1, c, 2, 2 * 2**i, 2 * 2**i) for i in range(4)]  # M4: 16x16, so images are 64x64
    masks = torch.zeros(1, 1, 1, 64, 64, dtype=torch.bool)
    masks[0, 0, 0, 0:8, 0:4] = True  # 32 pixels in cells (0..1, 0) of M4; split in 2 runs of rows 0-3, 4-7
    points = torch.tensor([[[0.8, 0.3]]])
    out = encoder(pyramid, mask_frames=torch.tensor([1]), masks=masks, points=points,
                  point_frames=torch.tensor([[0]]), queries_per_mask_object=2)
    assert out.queries_per_object == [2, 1]
    assert out.background.shape == (1, 4, c) and out.objects.shape == (1, 3, c)

    m4 = pyramid[3][0, :, 1]  # (C, 16, 16), the reference frame

    def mean_feature(pixels):
        return torch.stack([m4[:, y // 4, x // 4] for y, x in pixels]).mean(0)

    covered = {(y, x) for y in range(8) for x in range(4)}
    cell0 = [(y, x) for y in range(32) for x in range(32) if (y, x) not in covered]
    torch.testing.assert_close(out.background[0, 0], mean_feature(cell0))
    cell3 = [(y, x) for y in range(32, 64) for x in range(32, 64)]
    torch.testing.assert_close(out.background[0, 3], mean_feature(cell3))
    torch.testing.assert_close(out.objects[0, 0], m4[:, 0, 0])  # rows 0-3, cols 0-3: one M4 cell
    torch.testing.assert_close(out.objects[0, 1], m4[:, 1, 0])

    # PET: nearest cell of (y, x) = (0.8, 0.3) on an h x w map is (round(0.8 h - 0.5), round(0.3 w - 0.5)).
    samples = []
    for level in pyramid:
        h, w = level.shape[-2:]
        samples.append(level[0, :, 0, round(0.8 * h - 0.5), round(0.3 * w - 0.5)])
    expected = encoder.point_vos_query_extractor(torch.cat(samples))
    torch.testing.assert_close(out.objects[0, 2], expected)


def test_mask_features_get_no_gradient_and_point_features_do() -> None:
    # SPEC §2.5: mask sampling runs without gradient (backprop_through_fmap=False); PET sampling does not.
    torch.manual_seed(0)
    c = 8
    encoder = ObjectEncoder(dim=c, num_heads=2, num_layers=1, ffn_dim=16, bg_grid_size=(2, 2))
    pyramid = [torch.randn(1, c, 1, 2 * 2**i, 2 * 2**i, requires_grad=True) for i in range(4)]
    masks = torch.zeros(1, 1, 1, 64, 64, dtype=torch.bool)
    masks[0, 0, 0, 0:8, 0:4] = True
    out = encoder(pyramid, mask_frames=torch.tensor([0]), masks=masks, queries_per_mask_object=2)
    (out.background.sum() + out.objects.sum()).backward()
    assert all(level.grad is None for level in pyramid)
    out = encoder(pyramid, mask_frames=torch.tensor([0]), points=torch.tensor([[[0.5, 0.5]]]),
                  point_frames=torch.tensor([[0]]), queries_per_mask_object=2)
    (out.objects * torch.randn_like(out.objects)).sum().backward()
    assert all(level.grad is not None and level.grad.abs().sum() > 0 for level in pyramid)


def test_pet_key_positions_use_raw_pixel_counts() -> None:
    # The four points of a PET query carry the unnormalised 2D embedding of its M4 cell (SPEC §12.6).
    c = 8
    encoder = ObjectEncoder(dim=c, num_heads=2, num_layers=1, ffn_dim=16, bg_grid_size=(2, 2))
    pyramid = [torch.randn(1, c, 1, 2 * 2**i, 2 * 2**i) for i in range(4)]
    part = encoder._point_queries(pyramid, torch.tensor([[[0.1, 0.9]]]), torch.tensor([[0]]))
    pos = sine_embedding_2d(16, 16, num_feats=4, normalize=False)[:, round(0.1 * 16 - 0.5), round(0.9 * 16 - 0.5)]
    torch.testing.assert_close(part.keys - part.values, pos.expand(4, c))

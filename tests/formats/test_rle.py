import numpy as np
import pytest

from tarvis_fast.formats.rle import decode_rle, encode_rle, rle_area, to_compressed


def test_round_trip_and_area_on_irregular_mask():
    rng = np.random.default_rng(0)
    mask = rng.random((37, 53)) > 0.6
    rle = encode_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [37, 53]
    np.testing.assert_array_equal(decode_rle(rle), mask)
    assert rle_area(rle) == mask.sum()


def test_uncompressed_counts_are_column_major_runs():
    # 3x2 mask, column-major pixels: (0,0)=0 (1,0)=1 (2,0)=1 (0,1)=1 (1,1)=0 (2,1)=0
    # -> runs: 1 zero, 3 ones, 2 zeros
    rle = {"size": [3, 2], "counts": [1, 3, 2]}
    expected = np.array([[0, 1], [1, 0], [1, 0]], dtype=bool)
    np.testing.assert_array_equal(decode_rle(rle), expected)
    assert rle_area(rle) == 3
    np.testing.assert_array_equal(decode_rle(to_compressed(encode_rle(expected))), expected)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="one \\(H, W\\) mask"):
        encode_rle(np.zeros((2, 3, 4), bool))
    with pytest.raises(ValueError, match="not an RLE"):
        decode_rle({"counts": "abc"})

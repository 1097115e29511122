import numpy as np
import pytest
from sklearn.datasets import load_digits

from trainforge.data.split import stratified_split


def test_split_is_disjoint_complete_stratified_and_seeded():
    labels = load_digits().target
    train, val, test = stratified_split(labels, [0.15, 0.15], seed=0)
    assert len(set(train) & set(val)) == len(set(train) & set(test)) == len(set(val) & set(test)) == 0
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(labels)))
    assert abs(len(val) - 0.15 * len(labels)) <= 1 and abs(len(test) - 0.15 * len(labels)) <= 1
    overall = np.bincount(labels) / len(labels)
    for part in (train, val, test):
        share = np.bincount(labels[part], minlength=10) / len(part)
        assert np.abs(share - overall).max() < 0.02  # every class keeps its share
    again = stratified_split(labels, [0.15, 0.15], seed=0)
    assert all((a == b).all() for a, b in zip((train, val, test), again, strict=True))
    other = stratified_split(labels, [0.15, 0.15], seed=1)
    assert not (other[1] == val).all()


def test_seed_zero_is_a_real_seed():
    labels = np.repeat(np.arange(4), 25)
    a = stratified_split(labels, [0.2], seed=0)[1]
    b = stratified_split(labels, [0.2], seed=0)[1]
    c = stratified_split(labels, [0.2], seed=None)[1]  # type: ignore[arg-type]
    assert (a == b).all()
    assert c.shape == a.shape


def test_zero_fraction_gives_empty_part_and_bad_fractions_fail():
    labels = np.repeat(np.arange(3), 10)
    train, val = stratified_split(labels, [0.0])
    assert len(val) == 0 and len(train) == 30
    with pytest.raises(ValueError, match="fractions"):
        stratified_split(labels, [0.6, 0.5])

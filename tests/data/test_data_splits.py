"""Group-aware splits: no group straddles train/val, k-fold covers everything, fractions keep whole groups."""

import pytest

from echocare.data.splits import group_key, kfold_split, split_groups, subsample_groups, train_val_split


def _groups(n_patients=12, frames=5):
    paths = [f"cls{p % 3}/patient{p:02d}_f{f}.png" for p in range(n_patients) for f in range(frames)]
    return paths, [group_key(p, r"(patient\d+)") for p in paths]


def test_group_key_regex_csv_and_fallback():
    assert group_key("a/patient07_f3.png", r"(patient\d+)_") == "patient07"
    assert group_key("a/patient07_f3.png", r"patient\d+") == "patient07"
    assert group_key("a/x.png", r"(patient\d+)", explicit="P9") == "P9"
    assert group_key("a/x.png") == "a/x.png"
    with pytest.raises(ValueError, match="x.png"):
        group_key("a/x.png", r"(patient\d+)")


def test_split_never_leaks_a_group_and_is_deterministic():
    paths, groups = _groups()
    for seed in range(5):
        train, val = split_groups(groups, 0.25, seed)
        assert sorted(train + val) == list(range(len(paths)))
        assert not {groups[i] for i in train} & {groups[i] for i in val}
        assert len({groups[i] for i in val}) == 3
    assert split_groups(groups, 0.25, 1) == split_groups(list(groups), 0.25, 1)
    assert split_groups(groups, 0.25, 1) != split_groups(groups, 0.25, 2)
    # file order does not matter: reversing the records gives the same groups in val
    rev = groups[::-1]
    _, val_rev = split_groups(rev, 0.25, 1)
    _, val = split_groups(groups, 0.25, 1)
    assert {rev[i] for i in val_rev} == {groups[i] for i in val}


def test_split_errors_name_the_problem():
    with pytest.raises(ValueError, match="one group"):
        split_groups(["a", "a", "a"], 0.2)
    with pytest.raises(ValueError, match="val_fraction"):
        split_groups(["a", "b"], 1.0)
    assert split_groups(["a", "b"], 0.0) == ([0, 1], [])


def test_kfold_covers_all_records_once_without_leaks():
    paths, groups = _groups(n_patients=10, frames=3)
    seen = []
    for fold in range(4):
        train, val = kfold_split(groups, fold, 4, seed=3)
        assert not {groups[i] for i in train} & {groups[i] for i in val}
        assert sorted(train + val) == list(range(len(paths)))
        seen += val
    assert sorted(seen) == list(range(len(paths)))
    assert train_val_split(groups, fold=2, num_folds=4, seed=3) == kfold_split(groups, 2, 4, 3)
    with pytest.raises(ValueError, match="groups"):
        kfold_split(["a", "b"], 0, 3)


def test_subsample_keeps_whole_groups_and_nests():
    _, groups = _groups(n_patients=20, frames=4)
    idx = list(range(len(groups)))
    small = subsample_groups(idx, groups, 0.2, seed=0)
    large = subsample_groups(idx, groups, 0.5, seed=0)
    assert len(small) == 16 and len(large) == 40
    assert set(small) <= set(large)
    for kept in (small, large):
        kept_groups = {groups[i] for i in kept}
        assert sum(groups[i] in kept_groups for i in idx) == len(kept)  # no partial group
    assert subsample_groups(idx, groups, 1.0) == idx


def _imbalanced(n=20, pos=3, frames=1):
    """``n`` patients (``frames`` records each), the first ``pos`` of class 1, the rest class 0."""
    groups = [f"p{p:02d}" for p in range(n) for _ in range(frames)]
    labels = [int(p < pos) for p in range(n) for _ in range(frames)]
    return groups, labels


@pytest.mark.parametrize("frames", [1, 3])
def test_stratified_split_puts_every_class_in_validation(frames):
    groups, labels = _imbalanced(frames=frames)
    plain_one_class = 0
    for seed in range(40):
        _, val = split_groups(groups, 0.2, seed)
        plain_one_class += len({labels[i] for i in val}) == 1
        train, val = train_val_split(groups, 0.2, seed, labels=labels)
        assert {labels[i] for i in val} == {0, 1} and {labels[i] for i in train} == {0, 1}, seed
        assert not {groups[i] for i in train} & {groups[i] for i in val}
        assert len({groups[i] for i in val}) == 1 + round(0.2 * 17)  # per class: round(0.2 * 3) = 1, 3 of 17
    assert plain_one_class > 0  # what stratification fixes: unstratified, some seeds validate on one class


def test_stratified_kfold_and_group_majority_label():
    groups, labels = _imbalanced(n=20, pos=5, frames=2)
    labels[1] = 0  # patient p00 has labels (1, 0): a tie, so its class is the smaller label, 0
    seen = []
    for fold in range(4):
        train, val = kfold_split(groups, fold, 4, seed=3, labels=labels)
        assert {labels[i] for i in val} == {0, 1} and not {groups[i] for i in train} & {groups[i] for i in val}
        seen += val
    assert sorted(seen) == list(range(len(groups)))
    with pytest.raises(ValueError, match="labels= has 3 entries"):
        split_groups(groups, 0.2, labels=[0, 1, 0])


def test_stratified_label_fraction_keeps_every_class_and_nests():
    groups, labels = _imbalanced(n=40, pos=4, frames=2)
    idx = list(range(len(groups)))
    small = subsample_groups(idx, groups, 0.05, seed=1, labels=labels)
    big = subsample_groups(idx, groups, 0.5, seed=1, labels=labels)
    assert {labels[i] for i in small} == {0, 1} and set(small) <= set(big)
    assert sum(labels[i] for i in big) == 4  # half of class 1's 8 records: 2 of its 4 patients
    for kept in (small, big):
        kept_groups = {groups[i] for i in kept}
        assert all(i in kept for i in idx if groups[i] in kept_groups)  # whole groups

"""held_out_anomalies: test anomalies taken out of the test split (and optionally trained on), never tested."""

from __future__ import annotations

import pytest

from adbench.data import CIFAR10OneClass, Demo, Folder
from adbench.errors import ConfigError, DataError
from tests.conftest import make_mvtec_tree


def _paths(dm: Folder, split: str) -> set[str]:
    return {str(s.image_path) for s in dm.dataset(split).samples}


def test_held_out_anomalies_leave_the_test_split_and_join_training_with_masks(tmp_path):
    root = make_mvtec_tree(tmp_path, n_per_defect=4)  # 8 test anomalies: scratch, hole
    common = dict(root=root, category="widget", image_size=32, num_workers=0)
    full = Folder(**common)
    dm = Folder(**common, held_out_anomalies=3, train_on_held_out=True)
    test, train, val = _paths(dm, "test"), _paths(dm, "train"), _paths(dm, "val")
    held = _paths(full, "test") - test
    assert len(held) == 3 and held <= train and not held & test and not held & val
    moved = [s for s in dm.dataset("train").samples if s.label == 1]
    assert {str(s.image_path) for s in moved} == held
    assert all(s.mask_path is not None and s.mask_path.is_file() for s in moved)
    assert {s.defect for s in moved} == {"scratch", "hole"}  # spread over the defect types
    assert sum(s.label == 1 for s in dm.dataset("test").samples) == 5
    # the same seed holds out the same images; train_on_held_out=False keeps them out of training
    again = Folder(**common, held_out_anomalies=3)
    assert _paths(again, "test") == test and not _paths(again, "train") & held
    other = Folder(**common, held_out_anomalies=3, seed=1)
    assert _paths(other, "test") != test


def test_held_out_anomalies_on_the_demo_set_never_reach_the_test_loader(demo_root):
    dm = Demo(root=demo_root, category="coin", image_size=32, num_workers=0, held_out_anomalies=8,
              train_on_held_out=True, eval_batch_size=64)  # fmt: skip
    dm.setup()
    tested = {p for batch in dm.test_dataloader() for p in batch.path}
    trained = {
        p
        for batch in dm.train_dataloader()
        for p, y in zip(batch.path, batch.label.tolist(), strict=True)
        if y
    }
    assert len(trained) == 8 and not trained & tested


def test_held_out_anomalies_errors(tmp_path):
    root = make_mvtec_tree(tmp_path)  # 6 test anomalies
    with pytest.raises(DataError, match="held_out_anomalies=6 but .* 6 anomalous"):
        Folder(root=root, category="widget", num_workers=0, held_out_anomalies=6).setup()
    with pytest.raises(DataError, match=">= 0"):
        Folder(root=root, category="widget", num_workers=0, held_out_anomalies=-1)
    with pytest.raises(ConfigError, match="held_out_anomalies"):
        CIFAR10OneClass(root=tmp_path, num_workers=0, held_out_anomalies=2).setup()

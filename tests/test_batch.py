import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from adbench.data.batch import Batch


def _samples(n: int) -> list[dict]:
    return [
        {
            "image": torch.full((3, 4, 5), float(i)),
            "label": i % 2,
            "mask": torch.zeros(1, 4, 5),
            "path": f"img{i}.png",
            "index": 10 + i,
        }
        for i in range(n)
    ]


def test_collate_stacks_fields_with_contract_dtypes():
    batch = Batch.collate(_samples(3))
    assert batch.image.shape == (3, 3, 4, 5) and batch.image.dtype == torch.float32
    assert batch.label.tolist() == [0, 1, 0] and batch.label.dtype == torch.long
    assert batch.mask.shape == (3, 1, 4, 5) and batch.mask.dtype == torch.float32
    assert batch.path == ["img0.png", "img1.png", "img2.png"]
    assert batch.index.tolist() == [10, 11, 12] and batch.index.dtype == torch.long
    assert batch.batch_size == 3


def test_batch_reads_as_mapping_and_survives_lightning_device_transfer():
    batch = Batch.collate(_samples(2))
    assert batch["label"] is batch.label
    assert set(batch.keys()) == {"image", "label", "mask", "path", "index"}
    moved = move_data_to_device(batch, torch.device("cpu"))
    assert isinstance(moved, Batch)
    assert torch.equal(moved.image, batch.image) and moved.path == batch.path

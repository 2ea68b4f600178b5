"""The HL authors' detection settings (TCCofWANG/Hypersphere_loss ``faster_rcnn_HL/`` @87301df): the letterbox
augmentation against a transplant of ``utils/dataloader.py`` ``get_random_data``'s box arithmetic on the same
random draws, OpenCV's 8-bit HSV on known colours, ``task.normalize``/``task.augment``/``task.eval_loss``,
``schedule=detection_official`` against ``get_lr_scheduler``, and ``experiment=hl_table8_official``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import FAST, build_trainer
from podhl.config import compose_config
from podhl.data.detection import TensorDetectionDataset
from podhl.data.letterbox import AuthorsAugment, hsv8_to_rgb, hsv_jitter, rgb_to_hsv8
from podhl.errors import ConfigError
from podhl.tasks.detection import DetectionTask


# ----------------------------------------------------------------------- transplant (dataloader.py @87301df)
def code_boxes(box, iw, ih, w, h, draws, jitter=0.3):
    """get_random_data(random=True)'s geometry with ``self.rand`` replaced by the given uniform draws in [0, 1)."""
    it = iter(draws)

    def rand(a=0, b=1):
        return next(it) * (b - a) + a

    new_ar = iw / ih * rand(1 - jitter, 1 + jitter) / rand(1 - jitter, 1 + jitter)
    scale = rand(0.25, 2)
    if new_ar < 1:
        nh = int(scale * h)
        nw = int(nh * new_ar)
    else:
        nw = int(scale * w)
        nh = int(nw / new_ar)
    dx = int(rand(0, w - nw))
    dy = int(rand(0, h - nh))
    flip = rand() < 0.5
    box = np.array(box, dtype=np.float64)
    if len(box) > 0:
        box[:, [0, 2]] = box[:, [0, 2]] * nw / iw + dx
        box[:, [1, 3]] = box[:, [1, 3]] * nh / ih + dy
        if flip:
            box[:, [0, 2]] = w - box[:, [2, 0]]
        box[:, 0:2][box[:, 0:2] < 0] = 0
        box[:, 2][box[:, 2] > w] = w
        box[:, 3][box[:, 3] > h] = h
        box_w = box[:, 2] - box[:, 0]
        box_h = box[:, 3] - box[:, 1]
        box = box[np.logical_and(box_w > 1, box_h > 1)]
    return box, (nw, nh, dx, dy, flip)


def scene(h=40, w=60):
    """Grey-blue noise with a red box (10..30 × 5..25) and a thin box that scaling can drop."""
    g = torch.Generator().manual_seed(1)
    image = torch.randint(0, 80, (3, h, w), generator=g, dtype=torch.uint8)
    image[:, 5:25, 10:30] = torch.tensor([220, 20, 20], dtype=torch.uint8).view(3, 1, 1)
    boxes = torch.tensor([[10.0, 5.0, 30.0, 25.0], [40.0, 10.0, 41.5, 30.0], [0.0, 0.0, 60.0, 40.0]])
    return image, boxes


@pytest.mark.parametrize("seed", range(6))
def test_boxes_move_as_the_authors_code_moves_them_on_the_same_draws(seed):
    image, boxes = scene()
    augment = AuthorsAugment(size=64)
    torch.manual_seed(seed)
    draws = torch.rand(6).tolist()  # ar, ar, scale, dx, dy, flip: the code's order of self.rand calls
    torch.manual_seed(seed)
    out, moved, keep = augment(image, boxes)
    expected, _ = code_boxes(boxes.tolist(), 60, 40, 64, 64, draws)
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32 and 0.0 <= out.min() and out.max() <= 1.0
    assert moved.shape == (int(keep.sum()), 4)
    assert np.allclose(moved.numpy(), expected, atol=1e-4)
    assert (moved[:, :2] >= 0).all() and (moved[:, 2] <= 64).all() and (moved[:, 3] <= 64).all()
    assert ((moved[:, 2] - moved[:, 0]) > 1).all() and ((moved[:, 3] - moved[:, 1]) > 1).all()


def test_the_image_moves_with_its_boxes_and_the_canvas_is_grey():
    image, boxes = scene()
    for flip in (0.0, 1.0):
        augment = AuthorsAugment(size=64, hsv=(0.0, 0.0, 0.0), flip=flip)  # no colour change: pixels comparable
        torch.manual_seed(3)
        draws = torch.rand(6).tolist()
        torch.manual_seed(3)
        out, moved, _ = augment(image, boxes[:1])
        _, (nw, nh, dx, dy, flipped) = code_boxes(
            boxes[:1].tolist(), 60, 40, 64, 64, draws[:5] + [0.0 if flip else 1.0]
        )
        assert flipped == bool(flip)
        x1, y1, x2, y2 = moved[0].tolist()
        centre = out[:, int((y1 + y2) / 2), int((x1 + x2) / 2)] * 255
        assert torch.allclose(centre, torch.tensor([220.0, 20.0, 20.0]), atol=6)  # the red box is where its box is
        grey_row = 0 if dy > 0 else dy + nh  # a canvas row the pasted image does not reach
        assert 0 <= grey_row < 64, (dy, nh)  # seed 3 leaves one (checked, so the next line is never skipped)
        assert torch.allclose(out[:, grey_row, :] * 255, torch.full((3, 64), 128.0), atol=0.5)


def test_flip_mirrors_the_boxes_and_a_seed_fixes_everything():
    image, boxes = scene()
    torch.manual_seed(5)
    a = AuthorsAugment(size=64, flip=0.0)(image, boxes)
    torch.manual_seed(5)
    b = AuthorsAugment(size=64, flip=1.0)(image, boxes)
    assert torch.allclose(b[1][:, 0], 64 - a[1][:, 2]) and torch.allclose(b[1][:, 2], 64 - a[1][:, 0])
    assert torch.equal(b[1][:, [1, 3]], a[1][:, [1, 3]])
    torch.manual_seed(5)
    again = AuthorsAugment(size=64, flip=0.0)(image, boxes)
    assert torch.equal(again[0], a[0]) and torch.equal(again[1], a[1])
    torch.manual_seed(6)
    assert not torch.equal(AuthorsAugment(size=64, flip=0.0)(image, boxes)[0], a[0])


def test_hsv_is_opencv_8bit_on_known_colours():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128], [255, 128, 0], [0, 0, 0]]], np.uint8)
    # OpenCV COLOR_RGB2HSV (8-bit): H = hue°/2, S = 255·(max − min)/max, V = max; 255,128,0: hue 30.1° → 15
    expected = [[0, 255, 255], [60, 255, 255], [120, 255, 255], [0, 0, 128], [15, 255, 255], [0, 0, 0]]
    assert rgb_to_hsv8(rgb).tolist() == [expected]
    g = np.random.default_rng(0).integers(0, 256, (20, 20, 3)).astype(np.uint8)
    assert np.abs(hsv8_to_rgb(rgb_to_hsv8(g)).astype(int) - g).max() <= 5  # 2° hue steps: a few levels at most
    assert np.array_equal(hsv8_to_rgb(rgb_to_hsv8(rgb)), rgb)
    # the code's look-up tables: value × 0.5 halves V (hue, saturation kept)
    dark = hsv_jitter(rgb, [1.0, 1.0, 0.5])
    assert rgb_to_hsv8(dark)[0, :3, 2].tolist() == [127, 127, 127] and rgb_to_hsv8(dark)[0, :3, 0].tolist() == [
        0,
        60,
        120,
    ]


def test_the_dataset_uses_it_for_training_copies_only():
    image, boxes = scene()
    labels = torch.tensor([1, 2, 3])
    train = TensorDetectionDataset([image], [boxes], [labels], train=True)
    train.augmentation = AuthorsAugment(size=64)
    torch.manual_seed(0)
    out, target = train[0]
    torch.manual_seed(0)
    _, moved, keep = AuthorsAugment(size=64)(image.float() / 255, boxes)
    assert out.shape == (3, 64, 64) and torch.equal(target["boxes"], moved)
    assert torch.equal(target["labels"], labels[keep]) and len(target["difficult"]) == len(moved)
    evaluation, _ = train.evaluation_copy()[0]
    assert evaluation.shape == (3, 40, 60)  # no letterbox at evaluation


def test_task_options_are_checked():
    assert DetectionTask(normalize="divide255", augment="authors").authors_augment.size == 600
    with pytest.raises(ConfigError, match="task.normalize"):
        DetectionTask(normalize="caffe")
    with pytest.raises(ConfigError, match="leave task.image_mean"):
        DetectionTask(normalize="divide255", image_mean=[0.5, 0.5, 0.5])
    with pytest.raises(ConfigError, match="task.augment"):
        DetectionTask(augment="mosaic")


TINY = [
    "task=detection",
    "dataset=digits_boxes",
    "backbone=frcnn_tiny",
    "schedule=detection",
    "schedule.epochs=1",
    "schedule.batch_size=4",
    "trainer.limit_train_batches=1",
    "trainer.limit_test_batches=1",
    "task.rpn.post_nms_top_n_train=16",
    "task.rpn.post_nms_top_n_test=8",
    "task.roi.batch_size_per_image=8",
]


def test_divide255_authors_augment_and_the_evaluation_loss_in_a_run(tmp_path):
    trainer = build_trainer(
        *FAST,
        *TINY,
        "loss=hl_official_detection",
        "task.normalize=divide255",
        "task.augment=authors",
        "task.letterbox_size=96",
        "task.eval_loss=true",
        run_dir=tmp_path,
    )
    detector = trainer.model
    assert detector.transform.image_mean == [0.0] * 3 and detector.transform.image_std == [1.0] * 3
    train = trainer.task.data.train.dataset  # under the validation split's subset
    assert train.augmentation is trainer.task.authors_augment and train.augmentation.size == 96
    assert trainer.task.data.val.dataset.augmentation is None  # the validation copy is not augmented
    seen = []
    forward = trainer.criterion.forward

    def spy(*args, **kwargs):
        seen.append(kwargs.get("groups"))
        return forward(*args, **kwargs)

    trainer.criterion.forward = spy
    metrics = trainer.fit()
    assert math.isfinite(metrics["test_loss"]) and metrics["test_loss"] > 0
    # every call got each image's RoI count (≤ 8 RoIs each): the training step (batch 4), the evaluation loss (up to
    # schedule.eval_batch_size = 8 images)
    assert len(seen[0]) == 4 and all(groups is not None and max(groups) <= 8 for groups in seen), seen
    # then the validation loss (val_loss, always) and the test loss (task.eval_loss)
    n_val = min(8, len(trainer.task.data.val))
    assert len(seen) == 3 and len(seen[1]) == n_val and len(seen[2]) == 8, [len(g) for g in seen]
    after = []
    for eval_loss in (False, True):  # the evaluation loss's RoI sampling leaves torch's stream as evaluation leaves it
        torch.manual_seed(0)
        trainer.task.eval_loss = eval_loss
        trainer.task.evaluate(trainer.model, trainer.criterion, limit_batches=1)
        after.append(torch.get_rng_state())
    assert torch.equal(after[0], after[1])


def test_schedule_detection_official_is_the_authors_step_lr():
    from podhl.engine.optim import build_optimizer, build_scheduler, step_scheduler_epoch

    cfg = compose_config(["schedule=detection_official"])
    assert cfg.schedule.epochs == 50 and cfg.schedule.batch_size == 32
    optimizer = build_optimizer(cfg.schedule, [{"params": [torch.nn.Parameter(torch.zeros(1))]}])
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["weight_decay"] == 0
    scheduler = build_scheduler(cfg.schedule, optimizer)
    # nets/frcnn_training.py @87301df get_lr_scheduler('step', 1e-4, 1e-6, 50): step_lr with step_num = 10
    decay_rate, step_size = (1e-6 / 1e-4) ** (1 / (10 - 1)), 50 / 10
    for epoch in range(1, 51):
        code = 1e-4 * decay_rate ** ((epoch - 1) // step_size)  # set_optimizer_lr(..., epoch − 1), 0-based
        assert optimizer.param_groups[0]["lr"] == pytest.approx(code, rel=1e-9), epoch
        step_scheduler_epoch(scheduler, epoch)


def test_hl_table8_official_composes_the_authors_settings(monkeypatch):
    monkeypatch.delenv("PODHL_DETECTOR_INIT", raising=False)
    cfg = compose_config(["experiment=hl_table8_official"], return_hydra_config=True)
    assert cfg.loss._target_.endswith("OfficialDetectionHL") and cfg.loss.lam == 0.003 and cfg.loss.warmup_epochs == 0
    assert cfg.task.normalize == "divide255" and cfg.task.augment == "authors" and cfg.task.eval_loss
    assert cfg.schedule.epochs == 50 and cfg.trainer.select == "val_loss" and cfg.model.init_from is None
    assert cfg.task.roi.score_thresh == 0.02 and cfg.table.name == "hl_table8" and cfg.table.label == "hl"
    monkeypatch.setenv("PODHL_DETECTOR_INIT", "/runs/detector/best.pt")
    assert compose_config(["experiment=hl_table8_official"]).model.init_from == "/runs/detector/best.pt"


# the logit scale of each baseline, as hl_table8.yaml / hl_table9.yaml list them (None: no scale parameter)
SCALES = {
    "softmax": None,
    "asl": None,
    "er": 15.0,
    "center": None,
    "ccl": None,
    "mml": 30.0,
    "hml": None,
    "am": 30.0,
    "arc": 30.0,
    "hl": None,
}


@pytest.mark.parametrize("experiment", ["hl_table8", "hl_table9"])
def test_table_baselines_have_the_listed_scales_and_score_threshold(experiment):
    params = compose_config([f"experiment={experiment}"], return_hydra_config=True).hydra.sweeper.params
    assert str(params.loss).split(",") == list(SCALES)
    for loss, scale in SCALES.items():
        cfg = compose_config([f"experiment={experiment}", f"loss={loss}"])
        assert cfg.loss.get("scale") == scale, loss
        assert cfg.task.roi.score_thresh == 0.02
    assert compose_config([f"experiment={experiment}", "loss=am"]).loss.margin == 0.35

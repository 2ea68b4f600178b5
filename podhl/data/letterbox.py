"""The HL authors' detection training augmentation (``task.augment=authors``): ``FRCNNDataset.get_random_data``
of TCCofWANG/Hypersphere_loss ``faster_rcnn_HL/utils/dataloader.py`` @87301df (bubbliiiing/faster-rcnn-pytorch's),
transplanted to torch/PIL/numpy without OpenCV.

Per training image, in the code's order of random draws: aspect ratio ``iw/ih · U(1−j, 1+j) / U(1−j, 1+j)``
(j = 0.3), scale ``U(0.25, 2)`` of the canvas side, the resized image pasted at ``(U(0, w−nw), U(0, h−nh))`` on a
grey (128) ``size × size`` canvas (the letterbox), a horizontal flip with p = 0.5, then an HSV jitter: hue ×
``1 + U(−1, 1)·0.1`` (mod 180), saturation × ``1 + U(−1, 1)·0.7``, value × ``1 + U(−1, 1)·0.4`` (clipped),
applied through 256-entry look-up tables on OpenCV's 8-bit HSV (H in [0, 180), S and V in [0, 255]). Boxes are
scaled and shifted with the image, mirrored with it, clipped to the canvas, and boxes of width or height ≤ 1 px
dropped. Differences from the code: random numbers come from torch's stream (the one the loop seeds per epoch and
worker; the code uses numpy's global one), the 8-bit RGB↔HSV conversion is OpenCV's formula computed in float and
rounded (OpenCV's fixed-point tables can differ by one level), and the code's shuffle of the box order is left out
(the order of a target's boxes changes nothing in training).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from podhl.checks import in_range, integer

GREY = 128  # the canvas colour: Image.new('RGB', (w, h), (128, 128, 128))


def rgb_to_hsv8(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's ``COLOR_RGB2HSV`` on uint8 (H, W, 3): H = hue° / 2 in [0, 180), S = 255·(V − min)/V, V = max
    (hue from R when V = R, else from G when V = G, else from B, as OpenCV; float32, rounded)."""
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)
    diff = v - x.min(axis=-1)
    s = np.rint(255.0 * diff / np.maximum(v, 1.0))  # diff = 0 where v = 0
    safe = diff + (diff == 0)  # hue 0 for grey pixels: every difference below is 0 there
    h = np.where(v == r, (g - b) / safe, np.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe)) * 60.0
    h[h < 0] += 360.0
    h8 = np.rint(h / 2.0) % 180
    return np.stack([h8, s, v], axis=-1).astype(np.uint8)


def hsv8_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """OpenCV's ``COLOR_HSV2RGB`` on uint8 (H in [0, 180)), rounded to uint8: channel n ∈ (5, 3, 1) for (R, G, B) is
    v − v·s·clip(min(k, 4 − k), 0, 1) with k = (n + hue°/60) mod 6 (the six-sector formula in one expression)."""
    x = hsv.astype(np.float32)
    h6, s, v = (x[..., 0] * 2.0 % 360.0) / 60.0, x[..., 1] / 255.0, x[..., 2]
    vs = v * s
    out = np.empty(hsv.shape, dtype=np.float32)
    for channel, n in enumerate((5.0, 3.0, 1.0)):
        k = (n + h6) % 6.0
        out[..., channel] = v - vs * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def hsv_jitter(rgb: np.ndarray, r: Sequence[float]) -> np.ndarray:
    """The code's colour jitter with factors ``r`` = (hue, sat, val) multipliers: look-up tables on 8-bit HSV."""
    hsv = rgb_to_hsv8(rgb)
    x = np.arange(0, 256, dtype=np.float64)  # the code's r is float64 (np.random.uniform)
    lut_hue = ((x * r[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * r[2], 0, 255).astype(np.uint8)
    jittered = np.stack([lut_hue[hsv[..., 0]], lut_sat[hsv[..., 1]], lut_val[hsv[..., 2]]], axis=-1)
    return hsv8_to_rgb(jittered)


class AuthorsAugment:
    """``get_random_data(..., random=True)`` of the HL authors' detection code (module docstring).

    Args:
        size: side of the square canvas (``input_shape = [600, 600]``, ``train.py`` @87301df).
        jitter: aspect-ratio jitter j (``get_random_data(jitter=.3)``).
        scale: range of the canvas-side scale (``self.rand(.25, 2)``).
        hsv: (hue, sat, val) jitter amplitudes (``hue=.1, sat=0.7, val=0.4``).
        flip: probability of the horizontal flip (``self.rand() < .5``).
    """

    def __init__(
        self,
        size: int = 600,
        jitter: float = 0.3,
        scale: Sequence[float] = (0.25, 2.0),
        hsv: Sequence[float] = (0.1, 0.7, 0.4),
        flip: float = 0.5,
    ) -> None:
        self.size = integer("task.letterbox_size", size, low=2)
        self.jitter = in_range("task.jitter", jitter, 0.0, 1.0, high_open=True)
        low, high = (float(v) for v in scale)
        self.scale = (in_range("task.scale[0]", low, 0.0, low_open=True), in_range("task.scale[1]", high, low))
        self.hsv = tuple(in_range("task.hsv", float(v), 0.0, 1.0) for v in hsv)
        self.flip = in_range("task.flip", flip, 0.0, 1.0)

    @staticmethod
    def _rand(a: float = 0.0, b: float = 1.0) -> float:
        return float(torch.rand(())) * (b - a) + a  # the code's self.rand: np.random.rand()*(b-a) + a

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image (C, H, W) uint8 or float in [0, 1], boxes (N, 4) xyxy px) → (the canvas, float (3, size, size)
        in [0, 1]; the kept boxes moved with it; the (N,) bool mask of kept boxes: width and height > 1 px)."""
        u8 = image if image.dtype == torch.uint8 else (image.clamp(0, 1) * 255).round().to(torch.uint8)
        if u8.shape[0] == 1:
            u8 = u8.expand(3, -1, -1)  # cvtColor: grey images are read as RGB
        pil = Image.fromarray(u8.permute(1, 2, 0).contiguous().numpy(), "RGB")
        iw, ih = pil.size
        h = w = self.size
        j = self.jitter
        new_ar = iw / ih * self._rand(1 - j, 1 + j) / self._rand(1 - j, 1 + j)
        scale = self._rand(*self.scale)
        if new_ar < 1:
            nh = int(scale * h)
            nw = int(nh * new_ar)
        else:
            nw = int(scale * w)
            nh = int(nw / new_ar)
        nw, nh = max(nw, 1), max(nh, 1)
        pil = pil.resize((nw, nh), Image.BICUBIC)
        dx = int(self._rand(0, w - nw))
        dy = int(self._rand(0, h - nh))
        canvas = Image.new("RGB", (w, h), (GREY, GREY, GREY))
        canvas.paste(pil, (dx, dy))
        flip = self._rand() < self.flip
        if flip:
            canvas = canvas.transpose(Image.FLIP_LEFT_RIGHT)
        r = [(2 * self._rand() - 1) * a + 1 for a in self.hsv]  # np.random.uniform(-1, 1, 3)*[hue, sat, val] + 1
        data = hsv_jitter(np.asarray(canvas, dtype=np.uint8), r)
        out = torch.from_numpy(data).permute(2, 0, 1).float().div_(255.0)
        box = boxes.double().clone().reshape(-1, 4)
        box[:, [0, 2]] = box[:, [0, 2]] * nw / iw + dx
        box[:, [1, 3]] = box[:, [1, 3]] * nh / ih + dy
        if flip:
            box[:, [0, 2]] = w - box[:, [2, 0]]
        box[:, 0:2] = box[:, 0:2].clamp_min(0)
        box[:, 2] = box[:, 2].clamp_max(w)
        box[:, 3] = box[:, 3].clamp_max(h)
        keep = ((box[:, 2] - box[:, 0]) > 1) & ((box[:, 3] - box[:, 1]) > 1)  # discard invalid box
        return out, box[keep].float(), keep

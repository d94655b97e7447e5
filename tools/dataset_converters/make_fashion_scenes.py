"""Write the *fashion scenes* segmentation set in ADE20k layout.

Each scene has one to three background regions, split by straight cuts,
filled with crops of real texture photographs bundled with scikit-image
(``skimage.data``: brick, grass, gravel, the moon's surface, the Hubble deep
field; each its own *stuff* class), and one to three Fashion-MNIST items
pasted with their own pixel masks (*thing* classes; training scenes use the
Fashion-MNIST training items, validation scenes the test items). The soft
rim of an item (faint pixels outside its filled mask) is blended and
labelled 0, ADE20k's *other*.

Scenes are RGB. The starfield keeps its own colours; the grayscale texture
photographs are tinted towards their natural colour and each item gets a
random garment colour, both jittered per scene. A tint scales the three
channels of a gray pixel so that its ITU-R 601 luma is unchanged (up to
clipping): a model pretrained on grayscale sees, through the luma, the
pixels it knows. Output is deterministic for a given seed::

    OUT/images/{training,validation}/scene_00000.jpg
    OUT/annotations/{training,validation}/scene_00000.png

A finished set holds ``OUT/.complete``, the parameters it was written with
(and the set's format version); ``--if-changed`` writes nothing when they
match, so callers regenerate the set only when it would differ.

Usage:
    python tools/dataset_converters/make_fashion_scenes.py \
        --out-dir data/fashion_scenes --seed 0 --num-train 400 \
        --num-val 100 --size 64 [--if-changed]
"""
import argparse
import gzip
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

# This checkout first, also when the script is run without PYTHONPATH.
sys.path.insert(
    0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
from cosub_mm.datasets.fashion_scenes import (  # noqa: E402
    STUFF_TEXTURES, THING_CLASSES)

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, RGB order
# RGB gains of the grayscale photographs' natural colours, by skimage name;
# a texture not listed (already RGB) keeps its colours.
TEXTURE_TINTS = {
    'brick': (1.0, 0.62, 0.48),
    'grass': (0.62, 1.0, 0.45),
    'gravel': (0.95, 0.9, 0.78),
    'moon': (0.9, 0.92, 1.0),
}
FORMAT = 2  # 1: gray scenes; 2: RGB scenes
STAMP = '.complete'
MASK_LEVEL = 40  # item pixels brighter than this (0-255) form its mask
RIM_LEVEL = 8  # fainter pixels down to this are the blended rim (label 0)


def read_idx(path: str) -> np.ndarray:
    """Read an idx file (``.gz`` or raw) of Fashion-MNIST as uint8 array."""
    if not osp.isfile(path) and osp.isfile(path + '.gz'):
        path = path + '.gz'
    if not osp.isfile(path):
        raise FileNotFoundError(f'Fashion-MNIST file not found: {path}')
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        data = f.read()
    magic = int.from_bytes(data[:4], 'big')
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3):
        raise ValueError(f'{path} is not a uint8 idx file (magic {magic:#x})')
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big')
            for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion(root: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """Return Fashion-MNIST ``(images (N, 28, 28), labels (N,))``."""
    prefix = 'train' if split == 'train' else 't10k'
    images = read_idx(osp.join(root, f'{prefix}-images-idx3-ubyte'))
    labels = read_idx(osp.join(root, f'{prefix}-labels-idx1-ubyte'))
    if len(images) != len(labels):
        raise ValueError(f'{root}: {len(images)} {prefix} images but '
                         f'{len(labels)} labels')
    return images, labels


def load_textures() -> List[np.ndarray]:
    """The stuff textures, bundled photographs: ``(H, W)`` grayscale or
    ``(H, W, 3)`` RGB uint8 arrays."""
    import skimage.data
    textures = []
    for _, func in STUFF_TEXTURES:
        img = np.asarray(getattr(skimage.data, func)())
        textures.append(img[..., :3] if img.ndim == 3 else img)
    return textures


def tint(gray: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Colour a gray ``(..., )`` array by RGB ``gains``, keeping its luma.

    Returns a float ``(..., 3)`` array, not clipped.
    """
    gains = np.asarray(gains, np.float64)
    return gray[..., None].astype(np.float64) * (gains / (gains @ LUMA))


def jitter(gains: Sequence[float], rng: np.random.Generator,
           amount: float = 0.08) -> np.ndarray:
    """The gains, each scaled by up to ``1 ± amount``."""
    return np.asarray(gains) * rng.uniform(1 - amount, 1 + amount, 3)


def garment_colour(rng: np.random.Generator) -> np.ndarray:
    """RGB gains of a random hue at a random, moderate saturation."""
    import colorsys
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.2, 0.7), 1.0)
    return np.asarray(rgb)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(
        Image.fromarray(img).resize((size, size), Image.BILINEAR))


def texture_crop(texture: np.ndarray, size: int,
                 rng: np.random.Generator) -> np.ndarray:
    """A random square crop (1x to 4x the scene size), flipped/rotated,
    with the texture's channels (none or 3)."""
    side = min(texture.shape[:2])
    crop = int(rng.integers(size, min(4 * size, side) + 1))
    y = int(rng.integers(0, texture.shape[0] - crop + 1))
    x = int(rng.integers(0, texture.shape[1] - crop + 1))
    patch = _resize(texture[y:y + crop, x:x + crop], size)
    patch = np.rot90(patch, int(rng.integers(4)))
    return np.ascontiguousarray(patch[:, ::-1] if rng.random() < 0.5
                                else patch)


def stuff_layout(size: int, num_regions: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Region index per pixel: ``num_regions - 1`` random straight cuts."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    regions = np.zeros((size, size), np.int64)
    for r in range(1, num_regions):
        cy, cx = rng.uniform(0.25 * size, 0.75 * size, 2)
        angle = rng.uniform(0, np.pi)
        side = (yy - cy) * np.cos(angle) - (xx - cx) * np.sin(angle) > 0
        regions[side] = r
    return regions


def make_scene(size: int, textures: List[np.ndarray], items: np.ndarray,
               item_labels: np.ndarray,
               rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Return one scene ``(image (S, S, 3) uint8 RGB, label (S, S) uint8)``.

    ``textures`` are in the order of ``STUFF_TEXTURES``.
    """
    from scipy.ndimage import binary_fill_holes
    num_stuff = len(textures)
    image = np.zeros((size, size, 3), np.float64)
    label = np.zeros((size, size), np.uint8)
    num_regions = int(rng.choice([1, 2, 3], p=[0.2, 0.5, 0.3]))
    classes = rng.choice(num_stuff, num_regions, replace=False)
    regions = stuff_layout(size, num_regions, rng)
    for r, c in enumerate(classes):
        where = regions == r
        patch = texture_crop(textures[c], size, rng)
        if patch.ndim == 2:
            patch = tint(patch, jitter(TEXTURE_TINTS[STUFF_TEXTURES[c][1]],
                                       rng))
        image[where] = patch[where]
        label[where] = 1 + c
    for _ in range(int(rng.integers(1, 4))):
        idx = int(rng.integers(len(items)))
        side = int(rng.integers(int(0.4 * size), int(0.6 * size) + 1))
        gray = _resize(items[idx], side).astype(np.float64)
        core = binary_fill_holes(gray > MASK_LEVEL)
        rim = (gray > RIM_LEVEL) & ~core
        item = tint(gray, garment_colour(rng))
        y, x = rng.integers(0, size - side + 1, 2)
        window = (slice(y, y + side), slice(x, x + side))
        bg = image[window]
        alpha = np.clip(gray / MASK_LEVEL, 0, 1)[..., None]
        bg[rim] = (alpha * item + (1 - alpha) * bg)[rim]
        bg[core] = item[core]
        label[window][rim] = 0
        label[window][core] = 1 + num_stuff + int(item_labels[idx])
    return np.clip(image, 0, 255).astype(np.uint8), label


def write_split(out_dir: str, split: str, num: int, size: int,
                textures: List[np.ndarray], items: np.ndarray,
                item_labels: np.ndarray, rng: np.random.Generator,
                progress) -> None:
    img_dir = osp.join(out_dir, 'images', split)
    ann_dir = osp.join(out_dir, 'annotations', split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    for i in range(num):
        image, label = make_scene(size, textures, items, item_labels, rng)
        name = f'scene_{i:05d}'
        Image.fromarray(image).save(
            osp.join(img_dir, name + '.jpg'), quality=95)
        Image.fromarray(label).save(osp.join(ann_dir, name + '.png'))
        progress.update()


def stamp_text(seed: int, num_train: int, num_val: int, size: int) -> str:
    """The ``.complete`` stamp of a set written with these parameters."""
    return json.dumps(dict(format=FORMAT, seed=seed, num_train=num_train,
                           num_val=num_val, size=size), sort_keys=True)


def is_complete(out_dir: str, seed: int, num_train: int, num_val: int,
                size: int) -> bool:
    """Whether ``out_dir`` holds the finished set of these parameters."""
    stamp = osp.join(out_dir, STAMP)
    if not osp.isfile(stamp):
        return False
    with open(stamp) as f:
        return f.read() == stamp_text(seed, num_train, num_val, size)


def make_fashion_scenes(out_dir: str,
                        seed: int = 0,
                        num_train: int = 400,
                        num_val: int = 100,
                        size: int = 64,
                        fashion_root: str = 'data/fashion_mnist',
                        show_progress: bool = True) -> Dict[str, int]:
    """Write the set; return the number of scenes per split."""
    if size < 16:
        raise ValueError(f'--size must be at least 16, got {size}')
    if num_train < 1 or num_val < 1:
        raise ValueError('--num-train and --num-val must be at least 1')
    from mmengine.utils import ProgressBar
    stamp = osp.join(out_dir, STAMP)
    if osp.isfile(stamp):  # an interrupted rewrite is not complete
        os.remove(stamp)
    textures = load_textures()
    train_seq, val_seq = np.random.SeedSequence(seed).spawn(2)

    class _Silent:

        def update(self) -> None:
            pass

    progress = ProgressBar(num_train + num_val) if show_progress \
        else _Silent()
    for split, num, source, seq in (('training', num_train, 'train',
                                     train_seq),
                                    ('validation', num_val, 'test',
                                     val_seq)):
        items, labels = load_fashion(fashion_root, source)
        write_split(out_dir, split, num, size, textures, items, labels,
                    np.random.default_rng(seq), progress)
    if show_progress:
        print()
    with open(stamp, 'w') as f:
        f.write(stamp_text(seed, num_train, num_val, size))
    return dict(training=num_train, validation=num_val)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write the fashion-scenes segmentation set (ADE20k '
        'layout) from scikit-image textures and Fashion-MNIST items')
    parser.add_argument('--out-dir', required=True, help='output folder')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=100)
    parser.add_argument('--size', type=int, default=64,
                        help='side of the square scenes in pixels')
    parser.add_argument(
        '--fashion-root', default='data/fashion_mnist',
        help='folder with the Fashion-MNIST idx files (raw or .gz)')
    parser.add_argument(
        '--if-changed', action='store_true',
        help='write nothing if OUT holds the finished set of these '
        'parameters')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.if_changed and is_complete(args.out_dir, args.seed,
                                       args.num_train, args.num_val,
                                       args.size):
        print(f'{args.out_dir}: the scene set is up to date')
        return
    counts = make_fashion_scenes(args.out_dir, args.seed, args.num_train,
                                 args.num_val, args.size, args.fashion_root)
    print(f'wrote {counts["training"]} training and {counts["validation"]} '
          f'validation scenes of {args.size}x{args.size} to {args.out_dir} '
          f'({len(STUFF_TEXTURES)} stuff + {len(THING_CLASSES)} thing '
          'classes)')


if __name__ == '__main__':
    main()

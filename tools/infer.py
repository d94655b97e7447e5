"""Run a trained model on your own images, through the ecosystem's inferencers.

The config's ``default_scope`` decides: an mmpretrain config runs
mmpretrain's ``ImageClassificationInferencer`` and prints the top-k classes
of each image; an mmseg config runs mmseg's ``MMSegInferencer`` and writes,
per image, the label map and an overlay PNG (mmseg's visualiser) with a
legend of the classes it found. INPUT is any mix of image files, folders
and globs.

The checkpoint is read weights-only and must fit the config's model (a
checkpoint of another config is refused, naming the keys). An image is
converted to the model's input channels with a note (a grayscale photo for
an RGB model, a colour photo for a grayscale one); a classification config
whose test pipeline does not resize (the demo's: Fashion-MNIST arrives
28x28) gets the image resized to the backbone's ``img_size``, with a note.
An unreadable image is a warning naming the file, and the rest still run;
the exit status is 1 when any image failed.

Usage:
    python tools/infer.py CONFIG CHECKPOINT INPUT [INPUT ...]
        [--out-dir DIR] [--device cpu|cuda] [--topk 3]
        [--cfg-options K=V ...]

Example (after ``make demo``):
    python tools/infer.py configs/demo/upernet_fashion-scenes.py \
        work_dirs/demo/upernet/iter_600.pth \
        data/fashion_scenes/images/validation --out-dir work_dirs/infer
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.registry import DefaultScope

# This checkout first, also when the tool is run without PYTHONPATH.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import cosub_mm  # noqa: E402,F401  (stack fixes first, then registration)
from cosub_mm.utils import check_checkpoint_matches, scope_of  # noqa: E402

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff',
                    '.webp')
RESIZES = ('Resize', 'ResizeEdge', 'RandomResizedCrop', 'CenterCrop',
           'RandomCrop')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Run a trained classifier or segmentor on images')
    parser.add_argument('config', help='the config the model was trained '
                        'with')
    parser.add_argument('checkpoint', help='its checkpoint')
    parser.add_argument('inputs', nargs='+', metavar='INPUT',
                        help='image files, folders or globs')
    parser.add_argument('--out-dir', help='where to write predictions '
                        '(segmentation: label maps and overlays)')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--topk', type=int, default=3,
                        help='classes printed per image (classification)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings')
    return parser.parse_args(argv)


def expand_inputs(inputs: Sequence[str]) -> List[str]:
    """Image paths of files, folders (sorted, not recursive) and globs.

    Raises:
        SystemExit: Naming an input that matches nothing or a folder or
            glob without images.
    """
    paths: List[str] = []
    for item in inputs:
        if osp.isdir(item):
            found = sorted(
                osp.join(item, name) for name in os.listdir(item)
                if name.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise SystemExit(f'infer: folder {item} holds no images '
                                 f'({", ".join(IMAGE_EXTENSIONS)})')
            paths += found
        elif osp.isfile(item):
            paths.append(item)
        elif glob.has_magic(item):
            found = sorted(p for p in glob.glob(item) if osp.isfile(p)
                           and p.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise SystemExit(f'infer: {item} matches no image')
            paths += found
        else:
            raise SystemExit(f'infer: {item}: no such file or folder')
    return paths


def read_image(path: str, channels: int) -> Tuple[np.ndarray, Optional[str]]:
    """The image as the model's channels (BGR or gray) and a note.

    Raises:
        ValueError: When the file is not a readable image.
    """
    import mmcv
    try:
        img = mmcv.imread(path, flag='unchanged')
    except Exception as err:  # mmcv raises whatever its backend raises
        raise ValueError(f'{path}: not a readable image ({err})') from None
    if img is None or img.size == 0:
        raise ValueError(f'{path}: not a readable image')
    source = 1 if img.ndim == 2 else img.shape[2]
    if source == 4:
        img = img[..., :3]
    note = None
    if channels == 3 and source == 1:
        img = mmcv.gray2bgr(img if img.ndim == 2 else img[..., 0])
        note = 'grayscale image, converted to 3 channels'
    elif channels == 1 and source >= 3:
        img = mmcv.bgr2gray(img)
        note = 'colour image, converted to grayscale (luma)'
    elif channels == 1 and img.ndim == 3:
        img = img[..., 0]
    return img, note


def model_channels(model) -> int:
    """Input channels the model's data preprocessor normalises."""
    mean = getattr(model.data_preprocessor, 'mean', None)
    return 3 if mean is None else int(mean.numel())


def dataset_meta(cfg, ckpt) -> dict:
    """Class names (and palette) of the loaded checkpoint ``ckpt``, else of
    the config's test dataset."""
    from mmengine.registry import DATASETS
    meta = (ckpt.get('meta') or {}).get('dataset_meta') or {} \
        if isinstance(ckpt, dict) else {}
    if meta.get('classes'):
        return dict(meta)
    dataset = cfg.test_dataloader.dataset
    with DefaultScope.overwrite_default_scope(scope_of(cfg)):
        cls = DATASETS.get(dataset['type'])
    found = dict(getattr(cls, 'METAINFO', {}) or {})
    if dataset.get('metainfo'):
        found.update(dataset['metainfo'])
    return found


def _check_device(device: str) -> None:
    import torch
    if device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('infer: --device cuda, but this machine has no '
                         'CUDA device (use --device cpu)')


def _readable(paths: Sequence[str], channels: int,
              failed: List[str]) -> List[Tuple[str, np.ndarray]]:
    images = []
    for path in paths:
        try:
            img, note = read_image(path, channels)
        except ValueError as err:
            print(f'warning: skipped {err}', file=sys.stderr, flush=True)
            failed.append(path)
            continue
        if note:
            print(f'note: {path}: {note}', flush=True)
        images.append((path, img))
    return images


def classify(cfg, args: argparse.Namespace, paths: Sequence[str],
             failed: List[str]) -> List[dict]:
    """Top-k classes of each image, printed (and written to --out-dir)."""
    import mmcv
    from mmpretrain.apis import ImageClassificationInferencer
    # mmengine loads non-strictly (a warning): the check refuses a
    # checkpoint of another config instead of running half-random weights
    inferencer = ImageClassificationInferencer(
        model=cfg, pretrained=args.checkpoint, device=args.device)
    ckpt = check_checkpoint_matches(inferencer.model, args.checkpoint)
    inferencer.classes = inferencer.classes or dataset_meta(
        cfg, ckpt).get('classes')
    images = _readable(paths, model_channels(inferencer.model), failed)
    pipeline = cfg.test_dataloader.dataset.pipeline
    size = cfg.model.backbone.get('img_size')
    if not any(t['type'] in RESIZES for t in pipeline) and size:
        size = (size, size) if isinstance(size, int) else tuple(size)
        for i, (path, img) in enumerate(images):
            if img.shape[:2] != size:
                print(f'note: {path}: resized from {img.shape[1]}x'
                      f'{img.shape[0]} to the model\'s {size[1]}x{size[0]}',
                      flush=True)
                images[i] = (path, mmcv.imresize(img, size[::-1]))
    if not images:
        return []
    results = inferencer([img for _, img in images])
    classes = inferencer.classes or [str(i) for i in range(
        len(results[0]['pred_scores']))]
    rows = []
    for (path, _), res in zip(images, results):
        scores = np.asarray(res['pred_scores'])
        top = np.argsort(-scores)[:args.topk]
        rows.append(dict(image=path, top=[
            dict(label=int(k), name=classes[k], score=round(
                float(scores[k]), 4)) for k in top]))
        print(f'{path}: ' + ', '.join(
            f"{t['name']} {t['score']:.3f}" for t in rows[-1]['top']),
            flush=True)
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(osp.join(args.out_dir, 'predictions.json'), 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


def legend_overlay(vis: np.ndarray, label: np.ndarray,
                   classes: Sequence[str], palette: Sequence[Sequence[int]],
                   png: str, min_side: int = 256) -> Dict[str, float]:
    """The visualiser's overlay, enlarged, beside a legend of the classes
    in ``label`` (with their share of the pixels); written to ``png``.

    Returns:
        dict: ``{class name: percent of pixels}``, largest first.
    """
    from PIL import Image, ImageDraw
    scale = max(1, int(np.ceil(min_side / max(1, min(vis.shape[:2])))))
    overlay = Image.fromarray(vis).resize(
        (vis.shape[1] * scale, vis.shape[0] * scale), Image.NEAREST)
    ids, counts = np.unique(label, return_counts=True)
    order = np.argsort(-counts)
    shares = {classes[ids[i]]: round(100 * counts[i] / label.size, 1)
              for i in order if ids[i] < len(classes)}
    row = 18
    width = 190
    canvas = Image.new('RGB', (overlay.width + width, max(
        overlay.height, row * len(shares) + 10)), 'white')
    canvas.paste(overlay, (0, 0))
    draw = ImageDraw.Draw(canvas)
    name_to_id = {c: i for i, c in enumerate(classes)}
    for n, (name, share) in enumerate(shares.items()):
        y = 5 + n * row
        x = overlay.width + 8
        draw.rectangle([x, y, x + 14, y + 14],
                       fill=tuple(int(v) for v in palette[name_to_id[name]]),
                       outline='black')
        draw.text((x + 20, y + 2), f'{name} {share:.1f} %', fill='black')
    canvas.save(png)
    return shares


def segment(cfg, args: argparse.Namespace, paths: Sequence[str],
            failed: List[str]) -> List[dict]:
    """Label maps and legend overlays of each image in --out-dir."""
    from mmseg.apis import MMSegInferencer
    from PIL import Image
    if not args.out_dir:
        raise SystemExit('infer: a segmentation config writes label maps '
                         'and overlays: give --out-dir')
    inferencer = MMSegInferencer(model=cfg, weights=args.checkpoint,
                                 device=args.device)
    ckpt = check_checkpoint_matches(inferencer.model, args.checkpoint)
    meta = dataset_meta(cfg, ckpt)
    # mmseg's visualize passes the model's dataset_meta as keywords of
    # set_dataset_meta: classes and palette only
    inferencer.model.dataset_meta = dict(classes=meta['classes'],
                                         palette=meta.get('palette'))
    inferencer.visualizer.set_dataset_meta(meta['classes'],
                                           meta.get('palette'))
    # The pipeline loads the files itself; read them first so that an
    # unreadable one is reported and skipped, not the end of the run.
    images = _readable(paths, model_channels(inferencer.model), failed)
    if not images:
        return []
    classes = meta['classes']
    palette = inferencer.visualizer.dataset_meta['palette']
    os.makedirs(args.out_dir, exist_ok=True)
    # the legend names the classes: the visualiser's own labels would cover
    # a small scene
    out = inferencer([p for p, _ in images], return_vis=True,
                     with_labels=False)
    preds, vis_list = out['predictions'], out['visualization']
    if len(images) == 1:  # mmseg unwraps the lists of a single input
        preds, vis_list = [preds], [vis_list]
    rows = []
    for (path, _), label, vis in zip(images, preds, vis_list):
        stem = osp.splitext(osp.basename(path))[0]
        label = np.asarray(label).astype(np.uint8)
        Image.fromarray(label).save(
            osp.join(args.out_dir, f'{stem}_labels.png'))
        png = osp.join(args.out_dir, f'{stem}_overlay.png')
        shares = legend_overlay(vis, label, classes, palette, png)
        rows.append(dict(image=path, overlay=png, classes=shares))
        print(f'{path}: ' + ', '.join(
            f'{name} {share:.1f} %' for name, share in
            list(shares.items())[:args.topk]) + f' -> {png}', flush=True)
    with open(osp.join(args.out_dir, 'predictions.json'), 'w') as f:
        json.dump(rows, f, indent=1)
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from mmengine.config import Config
    _check_device(args.device)
    if not osp.isfile(args.config):
        raise SystemExit(f'infer: config {args.config} not found')
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'infer: checkpoint {args.checkpoint} not found')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    paths = expand_inputs(args.inputs)
    failed: List[str] = []
    try:
        scope = scope_of(cfg)
        run = classify if scope == 'mmpretrain' else segment
        with DefaultScope.overwrite_default_scope(scope):
            rows = run(cfg, args, paths, failed)
    except ValueError as err:  # checkpoint of another config, bad scope
        raise SystemExit(f'infer: {err}') from None
    if failed:
        print(f'infer: {len(failed)} of {len(paths)} images failed: '
              + ', '.join(failed), file=sys.stderr)
        return 1
    print(f'infer: {len(rows)} images', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

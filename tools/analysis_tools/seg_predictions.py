"""Per-class IoU of a segmentor on its validation set, and a PNG of scenes.

Runs mmseg's ``init_model`` / ``inference_model`` on every validation image
of the config, accumulates intersections and unions with mmseg's
``IoUMetric.intersect_and_union`` and writes:

- ``OUT_DIR/per_class_iou.json``: mIoU and the IoU of each class;
- ``OUT_DIR/seg_predictions.png``: the first ``--num-show`` scenes, each as
  image, ground truth and prediction, with a legend of the classes.

It prints the mIoU and the best and worst classes.

Usage:
    python tools/analysis_tools/seg_predictions.py CONFIG CHECKPOINT \\
        [--out-dir DIR] [--num-show 4] [--cfg-options K=V ...]
"""
import argparse
import json
import os
import os.path as osp
from typing import Dict, Optional, Sequence

import numpy as np


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out-dir', default='work_dirs/seg_predictions')
    parser.add_argument('--num-show', type=int, default=4)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    args = parse_args(argv)
    import cosub_mm  # noqa: F401  (stack fixes and registration)
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.apis import inference_model, init_model
    from mmseg.evaluation import IoUMetric
    from mmseg.registry import DATASETS
    from PIL import Image

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope('mmseg')
    model = init_model(cfg, args.checkpoint, device=args.device)
    ds_cfg = cfg.val_dataloader.dataset.copy()
    ds_cfg['pipeline'] = []  # paths only; inference_model loads the image
    dataset = DATASETS.build(ds_cfg)
    classes = list(dataset.metainfo['classes'])
    n = len(classes)
    reduce_zero = cfg.val_dataloader.dataset.get('reduce_zero_label', True)
    area = np.zeros((2, n))
    shown = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        pred = inference_model(model, info['img_path']).pred_sem_seg.data[0]
        gt = np.array(Image.open(info['seg_map_path'])).astype(np.int64)
        if reduce_zero:
            gt = np.where(gt == 0, 255, gt - 1)
        inter, union, _, _ = IoUMetric.intersect_and_union(
            pred.cpu(), torch.from_numpy(gt), n, 255)
        area += np.stack([inter.numpy(), union.numpy()])
        if len(shown) < args.num_show:
            shown.append((info['img_path'], gt, pred.cpu().numpy()))
    with np.errstate(invalid='ignore'):
        iou = area[0] / area[1] * 100
    per_class = {c: (None if np.isnan(v) else round(float(v), 2))
                 for c, v in zip(classes, iou)}
    valid = [(v, c) for c, v in per_class.items() if v is not None]
    result = dict(mIoU=round(float(np.nanmean(iou)), 2), per_class=per_class,
                  best=max(valid)[1], worst=min(valid)[1])
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'per_class_iou.json'), 'w') as f:
        json.dump(result, f, indent=1)
    print(f"mIoU {result['mIoU']:.2f} over {len(dataset)} validation scenes; "
          f"best class {result['best']} {per_class[result['best']]:.2f}, "
          f"worst {result['worst']} {per_class[result['worst']]:.2f}")
    if shown:
        plot(shown, classes, osp.join(args.out_dir, 'seg_predictions.png'),
             dataset.metainfo.get('palette'))
    return result


def plot(shown, classes, png: str, palette=None) -> None:
    """Image, ground truth and prediction of each shown scene, in the
    dataset's palette (the colours of mmseg's visualiser and of
    ``tools/infer.py``) when it has one."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    from PIL import Image
    colours = (np.asarray(palette, np.float64)[:len(classes)] / 255
               if palette is not None and len(palette) >= len(classes) else
               plt.get_cmap('tab20')(np.arange(len(classes)) % 20))
    cmap = ListedColormap(colours)
    fig, axes = plt.subplots(len(shown), 3, figsize=(7.5, 2.3 * len(shown)),
                             dpi=110, squeeze=False)
    for row, (path, gt, pred) in zip(axes, shown):
        row[0].imshow(np.array(Image.open(path).convert('RGB')))
        masked = np.ma.masked_equal(gt, 255)
        row[1].imshow(masked, cmap=cmap, vmin=0, vmax=len(classes) - 1,
                      interpolation='nearest')
        row[2].imshow(pred, cmap=cmap, vmin=0, vmax=len(classes) - 1,
                      interpolation='nearest')
        for ax, title in zip(row, ('scene', 'ground truth', 'prediction')):
            ax.set_title(title, fontsize=9)
            ax.axis('off')
    fig.legend(handles=[Patch(color=colours[i], label=c)
                        for i, c in enumerate(classes)],
               loc='center right', fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.78, 1))
    fig.savefig(png)
    plt.close(fig)


if __name__ == '__main__':
    main()

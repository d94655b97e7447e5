"""Compare segmentation finetuning from cosub, baseline and random init.

On the fashion-scenes set, UperNet (``configs/demo/upernet_fashion-scenes.
py``) is finetuned from the same recipe three times: from a backbone
pretrained with cosub, from one pretrained without it (both the demo's
Fashion-MNIST ViT), and from random weights; with ``--cosub-finetune`` also
from the cosub backbone with ``cosub_mm.CosubEncoderDecoder`` (cosub during
finetuning). Prints a table of validation mIoU; ``--markdown`` writes it.

Without ``--cosub-ckpt``/``--baseline-ckpt`` both backbones are pretrained
here, briefly and identically except for the loss: the demo ViT on the
first ``--pretrain-images`` Fashion-MNIST training images for
``--pretrain-epochs`` epochs (AdamW 1e-3 one-cycle, wd 0.05, batch 64,
uniform drop path 0.1, random shift + flip, softmax CE); cosub
(``CosubClassifier``, ``CosubLoss(loss_type='ce')``, λ = 0.5) against a
plain ``ImageClassifier``.

Usage:
    python tools/analysis_tools/compare_seg_init.py --work-dir DIR
        [--data-root DIR] [--cosub-ckpt PTH --baseline-ckpt PTH]
        [--iters 300] [--seeds 0 1] [--cosub-finetune] [--markdown FILE]
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

import cosub_mm  # noqa: E402,F401  (stack fixes first)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

DEMO_CFG = osp.join(REPO, 'configs', 'demo', 'upernet_fashion-scenes.py')
MEAN, STD = 72.94, 90.02  # Fashion-MNIST train-set statistics x 255
BATCH = 64  # pretraining batch


def _scenes_tool():
    path = osp.join(REPO, 'tools', 'dataset_converters',
                    'make_fashion_scenes.py')
    spec = importlib.util.spec_from_file_location('make_fashion_scenes',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def classifier_cfg(cosub: bool, drop_path_rate: float = 0.1) -> dict:
    """The demo's Fashion-MNIST ViT classifier (6 blocks, width 128)."""
    backbone = dict(
        type='VisionTransformer',
        arch=dict(embed_dims=128, num_layers=6, num_heads=4,
                  feedforward_channels=256),
        img_size=28, patch_size=4, in_channels=1,
        drop_path_rate=drop_path_rate,
        layer_cfgs=dict(drop_path_rate=drop_path_rate))
    # Softmax CE for both: in a few hundred steps BCE on one-hot targets
    # is still near chance level (it first learns the negative biases).
    head = dict(
        type='VisionTransformerClsHead', num_classes=10, in_channels=128,
        loss=dict(type='CrossEntropyLoss'))
    if cosub:
        return dict(type='cosub_mm.CosubClassifier', backbone=backbone,
                    head=head,
                    cosub_loss=dict(type='cosub_mm.CosubLoss',
                                    loss_type='ce'))
    return dict(type='ImageClassifier', backbone=backbone, head=head)


def pretrain(cosub: bool, out: str, images: int, epochs: int,
             seed: int = 0) -> Dict[str, float]:
    """Pretrain the demo ViT on Fashion-MNIST; save a classifier ckpt."""
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    init_default_scope('mmpretrain')
    tool = _scenes_tool()
    x, y = tool.load_fashion(osp.join(REPO, 'data', 'fashion_mnist'),
                             'train')
    x = torch.from_numpy(x[:images].copy()).float().unsqueeze(1)
    y = torch.from_numpy(y[:images].astype(np.int64))
    x = (x - MEAN) / STD
    torch.manual_seed(seed)
    model = MODELS.build(classifier_cfg(cosub))
    model.init_weights()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    steps = epochs * ((images + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    model.train()
    start = time.time()
    for _ in range(epochs):
        perm = torch.randperm(images)
        for i in range(0, images, BATCH):
            idx = perm[i:i + BATCH]
            batch = torch.nn.functional.pad(x[idx], (2, 2, 2, 2),
                                            mode='reflect')
            dy, dx = torch.randint(0, 5, (2, ))
            batch = batch[..., dy:dy + 28, dx:dx + 28]
            flip = torch.rand(len(idx)) < 0.5
            batch[flip] = batch[flip].flip(-1)
            samples = [
                DataSample().set_gt_label(int(t)).set_gt_score(
                    torch.nn.functional.one_hot(t, 10).float())
                for t in y[idx]
            ]
            losses = model.loss(batch, samples)
            loss = sum(v for k, v in losses.items() if 'loss' in k)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, out)
    tx, ty = tool.load_fashion(osp.join(REPO, 'data', 'fashion_mnist'),
                               'test')
    model.eval()
    with torch.no_grad():
        tx = (torch.from_numpy(tx[:2000].copy()).float().unsqueeze(1) -
              MEAN) / STD
        pred = model.head(model.extract_feat(tx)).argmax(1)
    acc = (pred.numpy() == ty[:2000]).mean() * 100
    return dict(top1=float(acc), seconds=time.time() - start)


def set_iters(cfg: Config, iters: int) -> None:
    """Shorten the demo schedule: warmup min(50, iters // 5), then poly."""
    warmup = max(min(50, iters // 5), 1)
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    cfg.param_scheduler[0].end = warmup
    cfg.param_scheduler[1].begin = warmup
    cfg.param_scheduler[1].end = max(iters, warmup + 1)


def finetune(data_root: str, work_dir: str, checkpoint: Optional[str],
             iters: int, seed: int, cosub_ft: bool) -> Dict[str, float]:
    """Finetune the demo UperNet once; return test mIoU, aAcc, seconds."""
    cfg = Config.fromfile(DEMO_CFG)
    cfg.work_dir = work_dir
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = data_root
    if checkpoint is None:
        cfg.model.backbone.init_cfg = None
    else:
        cfg.model.backbone.init_cfg.checkpoint = checkpoint
    if cosub_ft:
        cfg.model.type = 'cosub_mm.CosubEncoderDecoder'
    set_iters(cfg, iters)
    # Evaluate once, after training, with runner.test().
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1)
    cfg.default_hooks.logger.interval = max(iters // 5, 1)
    cfg.randomness = dict(seed=seed)
    cfg.log_level = 'WARNING'
    start = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    return dict(mIoU=float(metrics['mIoU']), aAcc=float(metrics['aAcc']),
                seconds=time.time() - start)


def to_markdown(rows: List[dict], header: str) -> str:
    lines = [header, '',
             '| backbone init | finetuning | seeds | mIoU (mean ± std) | '
             'per seed | aAcc | wall s / run |',
             '|---|---|---|---|---|---|---|']
    for r in rows:
        m = np.array(r['mIoU'])
        lines.append(
            f"| {r['init']} | {r['finetune']} | {len(m)} | "
            f"{m.mean():.2f} ± {m.std():.2f} | "
            f"{', '.join(f'{v:.2f}' for v in m)} | "
            f"{np.mean(r['aAcc']):.2f} | {np.mean(r['seconds']):.0f} |")
    return '\n'.join(lines) + '\n'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', required=True)
    parser.add_argument('--data-root', help='fashion scenes; generated '
                        '(seed 0, 400/100 scenes, 64 px) when missing')
    parser.add_argument('--cosub-ckpt')
    parser.add_argument('--baseline-ckpt')
    parser.add_argument('--pretrain-images', type=int, default=10000)
    parser.add_argument('--pretrain-epochs', type=int, default=3)
    parser.add_argument('--iters', type=int, default=300)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--cosub-finetune', action='store_true',
                        help='also finetune with CosubEncoderDecoder')
    parser.add_argument('--markdown', help='write the table here')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    data_root = args.data_root or osp.join(args.work_dir, 'fashion_scenes')
    if not osp.isdir(osp.join(data_root, 'images')):
        _scenes_tool().make_fashion_scenes(
            data_root, seed=0, num_train=400, num_val=100, size=64,
            fashion_root=osp.join(REPO, 'data', 'fashion_mnist'))
    notes = []
    ckpts = {}
    for name, given in (('cosub', args.cosub_ckpt),
                        ('baseline', args.baseline_ckpt)):
        if given:
            ckpts[name] = given
            continue
        ckpts[name] = osp.join(args.work_dir, f'pretrain_{name}.pth')
        res = pretrain(name == 'cosub', ckpts[name], args.pretrain_images,
                       args.pretrain_epochs)
        notes.append(f'{name} pretraining: {args.pretrain_images} images, '
                     f'{args.pretrain_epochs} epochs, top-1 '
                     f'{res["top1"]:.1f}% on the first 2,000 test images, '
                     f'{res["seconds"]:.0f} s')
        print(notes[-1], flush=True)
    runs = [('cosub-pretrained', ckpts['cosub'], False),
            ('baseline-pretrained', ckpts['baseline'], False),
            ('random', None, False)]
    if args.cosub_finetune:
        runs.insert(1, ('cosub-pretrained', ckpts['cosub'], True))
    rows = []
    for init, ckpt, cosub_ft in runs:
        row = dict(init=init, finetune='cosub (CosubEncoderDecoder)'
                   if cosub_ft else 'plain', mIoU=[], aAcc=[], seconds=[])
        for seed in args.seeds:
            wd = osp.join(args.work_dir,
                          f'{init}_{"cosubft" if cosub_ft else "plain"}_'
                          f's{seed}')
            res = finetune(data_root, wd, ckpt, args.iters, seed, cosub_ft)
            for k in ('mIoU', 'aAcc', 'seconds'):
                row[k].append(res[k])
            print(f'{init:20s} {row["finetune"]:28s} seed {seed}: mIoU '
                  f'{res["mIoU"]:.2f} aAcc {res["aAcc"]:.2f} '
                  f'({res["seconds"]:.0f} s)', flush=True)
        rows.append(row)
    header = (f'Fashion scenes (400 train / 100 val, 64 px), UperNet + demo '
              f'ViT, {args.iters} iterations x batch 8, torch threads '
              f'{torch.get_num_threads()}.')
    table = to_markdown(rows, header + ('\n\n' + '\n'.join(
        f'- {n}' for n in notes) if notes else ''))
    print(table)
    if args.markdown:
        with open(args.markdown, 'w') as f:
            f.write(table)


if __name__ == '__main__':
    main()

# Cosub on Fashion-MNIST: the embedded demo of cosub_mm, sized for a CPU.
#
# A ViT of 6 blocks, width 96, 3 heads, patch 7 (16 tokens + a class token)
# on 28x28 grayscale, every block dropping its residual branch with the same
# rate (the authors' uniform stochastic depth), co-trained with cosub on all
# 60,000 training images and evaluated on the 10,000 test images.
#
# Data: mmpretrain's FashionMNIST reads the idx files extracted into
# data/fashion_mnist by `make setup` (Debian's dataset-fashion-mnist);
# download=False, nothing is fetched.
#
# The schedule is in iterations with a warmup of 10 % of the run; change the
# length with `tools/train.py ... --iters N`, which rescales every scheduler
# bound with it (cosub_mm.utils.scale_schedule).
_base_ = ['../_base_/default_runtime.py']

data_root = 'data/fashion_mnist'
num_classes = 10
drop_path_rate = 0.1
max_iters = 700
warmup_iters = 70

model = dict(
    type='cosub_mm.CosubClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch=dict(
            embed_dims=96,
            num_layers=6,
            num_heads=3,
            feedforward_channels=192),
        img_size=28,
        patch_size=7,
        in_channels=1,
        drop_path_rate=drop_path_rate,
        out_type='cls_token',
        init_cfg=[
            dict(type='TruncNormal', layer='Linear', std=.02),
            dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
        ]),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=num_classes,
        in_channels=96,
        # The baseline twin's loss; cosub scores with cosub_loss. Softmax
        # cross-entropy in both arms: with BCE (the paper's ImageNet choice)
        # this small ViT sits at the class prior for ~100 iterations.
        loss=dict(type='CrossEntropyLoss')),
    cosub_loss=dict(type='cosub_mm.CosubLoss', lambda_=0.5, loss_type='ce'),
    # Each branch runs only on the rows that keep it, once for both copies
    # of an image while they are identical: the masked form's function and
    # random draws with less compute.
    efficient_drop_path=True)

data_preprocessor = dict(
    num_classes=num_classes,
    # Fashion-MNIST train-set statistics (0.2860, 0.3530) x 255.
    mean=[72.94],
    std=[90.02],
    to_rgb=False)

train_pipeline = [
    dict(type='RandomCrop', crop_size=28, padding=2, padding_mode='reflect'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=256,
    num_workers=0,
    dataset=dict(
        type='FashionMNIST',
        data_root=data_root,
        split='train',
        download=False,
        pipeline=train_pipeline),
    sampler=dict(type='InfiniteSampler', shuffle=True))
val_dataloader = dict(
    batch_size=500,
    num_workers=0,
    dataset=dict(
        type='FashionMNIST',
        data_root=data_root,
        split='test',
        # mmpretrain's MNIST picks the test files from test_mode, not split.
        test_mode=True,
        download=False,
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0)
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False,
         begin=warmup_iters, end=max_iters),
]
train_cfg = dict(by_epoch=False, max_iters=max_iters, val_interval=100)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=500, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
custom_hooks = [
    # The same rate in every block (mmpretrain's ViT spreads it linearly).
    dict(type='cosub_mm.DropPathRateHook', rule='uniform'),
    # {work_dir}/backbone.pth (backbone.* keys) for the UperNet finetuning.
    dict(type='cosub_mm.BackboneExportHook'),
]
env_cfg = dict(dist_cfg=dict(backend='gloo'))

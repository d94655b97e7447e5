# ImageNet-1k, DeiT III recipe (facebookresearch/deit README_revenge.md):
# RandomResizedCrop (bicubic) + flip + 3-Augment + ColorJitter 0.3, no
# RandAugment, no random erasing; repeated augmentation (3 repeats).
# Mixup 0.8 / CutMix 1.0 live in the model's train_cfg (batch augments).
dataset_type = 'ImageNet'
data_root = 'data/imagenet'
data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='cosub_mm.ThreeAugment'),
    dict(type='ColorJitter', brightness=0.3, contrast=0.3, saturation=0.3),
    dict(type='PackInputs'),
]
# Crop ratio 1.0: every DeiT III / cosub command passes --eval-crop-ratio
# 1.0, so deit's datasets.py resizes the short side to input_size / 1.0
# (bicubic) and centre-crops input_size (deit's own default, 0.875, is not
# used by these recipes).
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=224, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=256,
    num_workers=10,
    persistent_workers=True,
    drop_last=True,  # deit main.py's train DataLoader
    # per-sample seeds (cosub_mm.SampleSeedDataset/Sampler): augmentations
    # that do not depend on the worker, so --resume skips the trained
    # samples instead of re-loading them (docs/reliability.md)
    dataset=dict(
        type='cosub_mm.SampleSeedDataset',
        dataset=dict(type=dataset_type),
        data_root=data_root,
        split='train',
        pipeline=train_pipeline),
    sampler=dict(
        type='cosub_mm.SampleSeedSampler',
        sampler=dict(type='RepeatAugSampler', shuffle=True, num_repeats=3)))
val_dataloader = dict(
    batch_size=256,
    num_workers=10,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root, split='val',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

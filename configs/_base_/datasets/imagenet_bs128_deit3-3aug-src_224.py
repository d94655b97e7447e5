# ImageNet-1k with DeiT III's Simple Random Crop (--src): resize the short
# edge, random crop with 4 px reflect padding, flip, 3-Augment, ColorJitter
# 0.3; no repeated augmentation. Used for ImageNet-21k pretraining (the
# configs switch the train set) and the ImageNet-1k finetuning after it.
dataset_type = 'ImageNet'
data_root = 'data/imagenet'
data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=224, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomCrop', crop_size=224, padding=4,
         padding_mode='reflect'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='cosub_mm.ThreeAugment'),
    dict(type='ColorJitter', brightness=0.3, contrast=0.3, saturation=0.3),
    dict(type='PackInputs'),
]
# Crop ratio 1.0 (--eval-crop-ratio 1.0): resize the short side to 224,
# centre crop 224.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=224, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=128,
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
        sampler=dict(type='DefaultSampler', shuffle=True)))
val_dataloader = dict(
    batch_size=128,
    num_workers=10,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root, split='val',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# ImageNet-1k for DeiT III's 224 px finetuning of the 192 px ViT-B/L
# (facebookresearch/deit README_revenge.md): timm's create_transform with
# --aa rand-m9-mstd0.5-inc1 -- RandomResizedCrop (bicubic) + flip +
# RandAugment (2 ops, magnitude 9 of 10, std 0.5, increasing policies); no
# colour jitter (timm applies it only without --aa), no 3-Augment, no random
# erasing (--reprob 0.0), no repeated augmentation (--no-repeated-aug).
# Mixup 0.8 / CutMix 1.0 live in the model's train_cfg (batch augments).
dataset_type = 'ImageNet'
data_root = 'data/imagenet'
data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
# images are BGR until the data preprocessor: RandAugment pads with the
# mean in that order, as timm pads with the RGB mean
bgr_mean = data_preprocessor['mean'][::-1]

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(
            pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
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
    batch_size=64,
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
    batch_size=64,
    num_workers=10,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root, split='val',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

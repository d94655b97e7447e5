# Baseline twin of cosub_deit3-base-p16_8xb256-lamb-800e_in1k-192px.py: the
# DeiT III recipe for ViT-B/16 (192 px, LAMB lr 3e-3, drop path 0.2 in every
# block; otherwise as the ViT-S config).
_base_ = './deit3-small-p16_8xb256-lamb-800e_in1k.py'

model = dict(
    backbone=dict(arch='b', img_size=192, drop_path_rate=0.2),
    head=dict(in_channels=768))

# The ViT-S config's pipelines at 192 px (eval: crop ratio 1.0, the short
# side resized to 192 and a 192 centre crop).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=192, backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='cosub_mm.ThreeAugment'),
    dict(type='ColorJitter', brightness=0.3, contrast=0.3, saturation=0.3),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=192, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=192),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

optim_wrapper = dict(optimizer=dict(lr=3e-3))

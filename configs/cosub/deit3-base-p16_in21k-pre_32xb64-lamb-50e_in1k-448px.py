# Baseline twin of cosub_deit3-base-p16_in21k-pre_32xb64-lamb-50e_in1k-448px
# .py: DeiT III ImageNet-1k finetuning of the ImageNet-21k ViT-B/16 of
# deit3-base-p16_32xb64-lamb-240e_in21k.py at 448 px, the path of the
# paper's 87.4% cosub ViT-B (LAMB lr 3e-4, weight decay 0.02, 50 epochs,
# batch 32 x 64 = 2048, drop path 0.15 in every block, CutMix 1.0, label
# smoothing 0.1, Simple Random Crop + 3-Augment + ColorJitter 0.3).
_base_ = './deit3-base-p16_in21k-pre_32xb64-lamb-50e_in1k.py'

model = dict(backbone=dict(img_size=448))

# The 224 px config's SRC pipelines at 448 px (eval: crop ratio 1.0).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=448, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomCrop', crop_size=448, padding=4,
         padding_mode='reflect'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='cosub_mm.ThreeAugment'),
    dict(type='ColorJitter', brightness=0.3, contrast=0.3, saturation=0.3),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=448, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=448),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

# Baseline twin of cosub_deit3-base-p16_8xb256-lamb-800e_in1k-192px.py: the
# DeiT III recipe for ViT-B/16 (192 px, LAMB lr 3e-3, drop path 0.2 in every
# block; otherwise as the ViT-S config).
_base_ = [
    '../_base_/datasets/imagenet_bs256_deit3-3aug_192.py',
    '../_base_/schedules/imagenet_bs2048_lamb_800e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='DeiT3', arch='b', img_size=192, patch_size=16,
        drop_path_rate=0.2),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='cosub_mm.DeiT3BCELoss')),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))

optim_wrapper = dict(optimizer=dict(lr=3e-3))
custom_hooks = [
    dict(type='cosub_mm.DropPathRateHook', rule='uniform'),
    dict(type='cosub_mm.BackboneExportHook'),
]

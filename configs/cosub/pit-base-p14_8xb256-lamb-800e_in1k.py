# Baseline twin of cosub_pit-base-p14_8xb256-lamb-800e_in1k.py: PiT-B
# (Heo et al., ICCV 2021; 73.8 M parameters) with the DeiT III ImageNet-1k
# recipe of configs/cosub/README.md and drop path 0.2 in every block.
_base_ = [
    '../_base_/datasets/imagenet_bs256_deit3-3aug_224.py',
    '../_base_/schedules/imagenet_bs2048_lamb_800e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='cosub_mm.PiT', arch='base', img_size=224, drop_path_rate=0.2),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1024,
        loss=dict(type='cosub_mm.DeiT3BCELoss')),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))

custom_hooks = [
    # the same drop-path rate in every block, as cosub and DeiT III use it
    dict(type='cosub_mm.DropPathRateHook', rule='uniform'),
    dict(type='cosub_mm.BackboneExportHook'),
]


# Baseline twin of cosub_convnext-base_8xb256-lamb-800e_in1k.py: ConvNeXt-B
# (Liu et al., CVPR 2022; 88.6 M parameters) with the DeiT III ImageNet-1k
# recipe of configs/cosub/README.md and drop path 0.3 in every block.
_base_ = [
    '../_base_/datasets/imagenet_bs256_deit3-3aug_224.py',
    '../_base_/schedules/imagenet_bs2048_lamb_800e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ConvNeXt',
        arch='base',
        drop_path_rate=0.3,
        layer_scale_init_value=1e-6,
        gap_before_final_norm=True),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1024,
        loss=dict(type='cosub_mm.DeiT3BCELoss')),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))

custom_hooks = [
    # the same drop-path rate in every block, as cosub and DeiT III use it
    dict(type='cosub_mm.DropPathRateHook', rule='uniform'),
    dict(type='cosub_mm.BackboneExportHook'),
]

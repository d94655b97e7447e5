# Baseline twin of cosub_regnety-16gf_8xb256-lamb-800e_in1k.py: RegNetY-16GF
# (Radosavovic et al., CVPR 2020; 83.6 M parameters) with the DeiT III
# ImageNet-1k recipe of configs/cosub/README.md (224 px, LAMB, BCE,
# 3-Augment, Mixup/CutMix) and drop path 0.1 in every block.
_base_ = [
    '../_base_/datasets/imagenet_bs256_deit3-3aug_224.py',
    '../_base_/schedules/imagenet_bs2048_lamb_800e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='cosub_mm.RegNetY', arch='regnety_16gf', drop_path_rate=0.1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=3024,
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


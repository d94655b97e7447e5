# Baseline twin of
# cosub_xcit-small-12-p16_8xb256-lamb-800e_in1k.py: XCiT-S12/16
# (El-Nouby et al., NeurIPS 2021; 26.3 M parameters) with the DeiT III
# ImageNet-1k recipe of configs/cosub/README.md and drop path 0.05 in every
# block.
_base_ = [
    '../_base_/datasets/imagenet_bs256_deit3-3aug_224.py',
    '../_base_/schedules/imagenet_bs2048_lamb_800e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='XCiT',
        img_size=224,
        patch_size=16,
        embed_dims=384,
        depth=12,
        num_heads=8,
        mlp_ratio=4,
        qkv_bias=True,
        layer_scale_init_value=1.0,
        tokens_norm=True,
        drop_path_rate=0.05,
        out_type='cls_token'),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=384,
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


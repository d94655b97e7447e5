# Baseline twin of cosub_deit3-small-p16_8xb256-lamb-800e_in1k.py: the
# DeiT III recipe (ViT-S/16 with layer scale 1e-4, 224 px, LAMB lr 4e-3, BCE,
# 3-Augment + ColorJitter 0.3, Mixup 0.8 / CutMix 1.0, repeated
# augmentation, 5 warmup epochs, 800 epochs, batch 8 x 256 = 2048, the same
# drop-path rate 0.05 in every block).
_base_ = [
    '../_base_/datasets/imagenet_bs256_deit3-3aug_224.py',
    '../_base_/schedules/imagenet_bs2048_lamb_800e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='DeiT3', arch='s', img_size=224, patch_size=16,
        drop_path_rate=0.05),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=1000,
        in_channels=384,
        loss=dict(type='cosub_mm.DeiT3BCELoss'),
        # trunc-normal(0.02) as every Linear in models_v2.py _init_weights;
        # mmpretrain's ViT head would start at zero
        init_cfg=dict(type='TruncNormal', layer='Linear', std=.02)),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
        # models_v2.py vit_models(init_scale=1e-4); mmpretrain's LayerScale
        # starts at 1e-5
        dict(type='Constant', layer='LayerScale', val=1e-4),
        # the FFN Linears trunc-normal(0.02) too (mmpretrain re-initialises
        # them with Xavier) and cls_token trunc-normal(0.02) (mmpretrain:
        # zero), as models_v2.py; see cosub_mm.stack.deit3
        dict(type='cosub_mm.DeiT3AuthorsInit'),
    ],
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))

custom_hooks = [
    # mmpretrain spreads drop_path_rate linearly over depth; DeiT III and
    # cosub use it in every block.
    dict(type='cosub_mm.DropPathRateHook', rule='uniform'),
    # {work_dir}/backbone.pth for the segmentation configs
    dict(type='cosub_mm.BackboneExportHook'),
]

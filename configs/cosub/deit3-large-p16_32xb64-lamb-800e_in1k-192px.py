# Baseline twin of cosub_deit3-large-p16_32xb64-lamb-800e_in1k-192px.py: the
# DeiT III recipe for ViT-L/16 (192 px, LAMB lr 3e-3, drop path 0.45 in
# every block, batch 32 x 64 = 2048 as the authors ran it).
_base_ = [
    '../_base_/datasets/imagenet_bs256_deit3-3aug_192.py',
    '../_base_/schedules/imagenet_bs2048_lamb_800e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='DeiT3', arch='l', img_size=192, patch_size=16,
        drop_path_rate=0.45),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
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

train_dataloader = dict(batch_size=64)
val_dataloader = dict(batch_size=64)
test_dataloader = dict(batch_size=64)
optim_wrapper = dict(optimizer=dict(lr=3e-3))
custom_hooks = [
    dict(type='cosub_mm.DropPathRateHook', rule='uniform'),
    dict(type='cosub_mm.BackboneExportHook'),
]

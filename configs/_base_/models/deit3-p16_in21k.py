# DeiT III ViT/16 for ImageNet-21k pretraining: 21k-class head with label
# smoothing 0.1, CutMix 1.0, DeiT III init. The S/B/L configs set the arch,
# drop path rate and head width.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='DeiT3', arch='s', img_size=224, patch_size=16,
        drop_path_rate=0.05),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=21841,
        in_channels=384,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
    train_cfg=dict(augments=[dict(type='CutMix', alpha=1.0)]))

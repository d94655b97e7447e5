# DeiT III ViT/16 for ImageNet-1k finetuning of an ImageNet-21k backbone:
# 1000-class head (label smoothing 0.1, TruncNormal init), CutMix 1.0, the
# backbone loaded from a BackboneExportHook file. The S/B/L configs set the
# arch, drop path rate, head width and the backbone file (`checkpoint`).
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='DeiT3', arch='s', img_size=224, patch_size=16,
        drop_path_rate=0.05,
        init_cfg=dict(type='Pretrained', prefix='backbone.')),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=1000,
        in_channels=384,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=.02)),
    train_cfg=dict(augments=[dict(type='CutMix', alpha=1.0)]))

# DeiT III ViT/16 for ImageNet-21k pretraining: 21k-class head with label
# smoothing 0.1, CutMix 1.0, the authors' DeiT III init (LayerScale 1e-4,
# trunc-normal FFN Linears, class token and head: cosub_mm.DeiT3AuthorsInit).
# The S/B/L configs set the arch, drop path rate and head width.
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
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
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
    train_cfg=dict(augments=[dict(type='CutMix', alpha=1.0)]))

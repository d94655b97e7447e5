# UperNet (pool scales 1/2/3/6, 512 channels) + FCN auxiliary head (weight
# 0.4) for ADE20k's 150 classes, with SyncBN, on a hierarchical backbone
# of widths 96/192/384/768 (Swin-T, ConvNeXt-T). The backbone files add the
# backbone (and a neck) and override the widths. LayerDecayEncoderDecoder
# lets mmpretrain's layer-decay constructor see the backbone depth of every
# parameter (STACK.md breakage 7).
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(512, 512))
model = dict(
    type='cosub_mm.LayerDecayEncoderDecoder',
    data_preprocessor=data_preprocessor,
    decode_head=dict(
        type='UPerHead',
        in_channels=[96, 192, 384, 768],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=384,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

# UperNet + FCN auxiliary head on a plain DeiT III backbone (mmpretrain's
# DeiT3, LayerScale on): four block outputs as feature maps, brought to
# strides 4/8/16/32 by MultiLevelNeck (scales 4, 2, 1, 0.5), as mmseg's
# vit_deit-*_mln_upernet configs. Sizes are DeiT3-B; configs override them.
# LayerDecayEncoderDecoder lets mmpretrain's layer-decay constructor see
# the backbone depth of every parameter (STACK.md breakage 7).
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
    backbone=dict(
        type='mmpretrain.DeiT3',
        arch='base',
        img_size=(512, 512),
        patch_size=16,
        out_indices=(3, 5, 7, 11),
        out_type='featmap',
        use_layer_scale=True,
        final_norm=True,  # keeps the checkpoint's ln1: no unexpected key
        drop_path_rate=0.2,
        # checkpoint: a CosubClassifier checkpoint or an exported backbone
        # (keys backbone.*); pos_embed is resized from 14x14 to 32x32.
        init_cfg=dict(
            type='Pretrained', checkpoint=None, prefix='backbone.')),
    neck=dict(
        type='MultiLevelNeck',
        in_channels=[768, 768, 768, 768],
        out_channels=768,
        scales=[4, 2, 1, 0.5]),
    decode_head=dict(
        type='UPerHead',
        in_channels=[768, 768, 768, 768],
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
        in_channels=768,
        in_index=3,
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

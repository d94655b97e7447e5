# UperNet + FCN auxiliary head on a plain DeiT III backbone (mmpretrain's
# DeiT3, LayerScale on): four block outputs as feature maps, brought to
# strides 4/8/16/32 by MultiLevelNeck (scales 4, 2, 1, 0.5), as mmseg's
# vit_deit-*_mln_upernet configs. Sizes are DeiT3-B; configs override them.
_base_ = './upernet.py'
model = dict(
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
    decode_head=dict(in_channels=[768, 768, 768, 768]),
    auxiliary_head=dict(in_channels=768, in_index=3))

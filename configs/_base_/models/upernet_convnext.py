# UperNet + FCN auxiliary head on mmpretrain's ConvNeXt (ConvNeXt-T).
_base_ = './upernet.py'
model = dict(
    backbone=dict(
        type='mmpretrain.ConvNeXt',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,
        gap_before_final_norm=False,
        # norm0..norm2 are new output norms: the classifier has norm3 only.
        init_cfg=dict(
            type='Pretrained', checkpoint=None, prefix='backbone.')))

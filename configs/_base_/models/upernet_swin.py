# UperNet + FCN auxiliary head on mmpretrain's Swin Transformer (Swin-T),
# which loads mmpretrain classifier checkpoints (CosubClassifier included).
_base_ = './upernet.py'
model = dict(
    backbone=dict(
        type='mmpretrain.SwinTransformer',
        arch='tiny',
        img_size=224,
        window_size=7,
        pad_small_map=True,  # small TTA scales: maps below one window
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        # norm0..norm2 are new output norms: the classifier has norm3 only.
        init_cfg=dict(
            type='Pretrained', checkpoint=None, prefix='backbone.')))

# UperNet on the fashion scenes for the segmentation study
# (tools/analysis_tools/compare_seg_init.py): the demo's UperNet recipe
# (configs/demo/upernet_fashion-scenes.py) on the study's ViT (6 blocks,
# width 64, 2 heads, MLP 128, patch 7; RGB input), so that the
# classification study's cosub and baseline classifiers initialise it.
# The study sets the checkpoint (or init_cfg=None), the data root, the seed,
# the length (--length) and, for cosub during finetuning,
# model.type=cosub_mm.CosubEncoderDecoder.
_base_ = ['../demo/upernet_fashion-scenes.py']

embed_dims = 64
model = dict(
    backbone=dict(
        arch=dict(
            embed_dims=embed_dims,
            num_layers=6,
            num_heads=2,
            feedforward_channels=2 * embed_dims)),
    neck=dict(in_channels=[embed_dims] * 4, out_channels=embed_dims),
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))

# Cosub for a timm backbone: timm's DeiT III ViT-S/16
# (deit3_small_patch16_224, pip install cosub_mm[timm]) inside mmpretrain's
# TIMMBackbone, with the recipe of cosub_deit3-small-p16_8xb256-lamb-800e_
# in1k.py (data, LAMB, BCE, Mixup/CutMix, drop path 0.05 in every block).
# efficient_drop_path converts timm's ViT Blocks to cosub_mm's
# EfficientTimmBlock (equal draw for draw); TokenPooling hands the class
# token to the head. timm initialises its own weights (trunc-normal 0.02
# Linears, as the authors); layer scale starts at 1e-4 as models_v2.py.
_base_ = './cosub_deit3-small-p16_8xb256-lamb-800e_in1k.py'

model = dict(
    efficient_drop_path=True,
    backbone=dict(
        _delete_=True,
        type='mmpretrain.TIMMBackbone',
        model_name='deit3_small_patch16_224',
        pretrained=False,
        init_values=1e-4,
        drop_path_rate=0.05),
    neck=dict(_delete_=True, type='cosub_mm.TokenPooling'),
    init_cfg=None)

# Baseline twin of
# cosub_deit3-small-p16_in21k-pre_16xb128-lamb-50e_in1k.py:
# DeiT III ImageNet-1k finetuning of the
# ImageNet-21k ViT-S/16 of deit3-small-p16_16xb128-lamb-240e_in21k.py
# at 224 px (LAMB lr 3e-4, weight decay 0.02, 50 epochs, batch 16 x 128 = 2048,
# drop path 0.05 in every block, CutMix 1.0, label smoothing 0.1, Simple
# Random Crop + 3-Augment + ColorJitter 0.3).
_base_ = [
    '../_base_/models/deit3-p16_in21k-pre_in1k.py',
    '../_base_/datasets/imagenet_bs128_deit3-3aug-src_224.py',
    '../_base_/schedules/imagenet_bs2048_lamb_50e-ft.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        arch='s', drop_path_rate=0.05,
        init_cfg=dict(checkpoint='work_dirs/deit3-small-p16_16xb128-lamb-240e_in21k/backbone.pth')),
    head=dict(in_channels=384))

train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = dict(batch_size=128)
custom_hooks = [dict(type='cosub_mm.DropPathRateHook', rule='uniform')]

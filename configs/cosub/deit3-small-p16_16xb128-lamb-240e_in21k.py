# Baseline twin of cosub_deit3-small-p16_16xb128-lamb-240e_in21k.py: DeiT III
# ImageNet-21k pretraining of ViT-S/16 (224 px, LAMB lr 1e-3, weight decay
# 0.02, 240 epochs, batch 16 x 128 = 2048, drop path 0.05 in every block,
# CutMix 1.0 without Mixup, softmax cross-entropy with label smoothing 0.1,
# Simple Random Crop + 3-Augment + ColorJitter 0.3, no repeated
# augmentation). No validation: the head has the 21k classes; finetune with
# deit3-small-p16_in21k-pre_*_in1k.py. Writes {work_dir}/backbone.pth.
_base_ = [
    '../_base_/models/deit3-p16_in21k.py',
    '../_base_/datasets/imagenet_bs128_deit3-3aug-src_224.py',
    '../_base_/schedules/imagenet21k_bs2048_lamb_240e.py',
    '../_base_/default_runtime.py',
]

data_preprocessor = dict(num_classes=21841)
model = dict(
    backbone=dict(arch='s', drop_path_rate=0.05),
    head=dict(in_channels=384))

train_dataloader = dict(
    batch_size=128,
    dataset=dict(type='ImageNet21k', data_root='data/imagenet21k'))
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None
custom_hooks = [
    dict(type='cosub_mm.DropPathRateHook', rule='uniform'),
    dict(type='cosub_mm.BackboneExportHook'),
]

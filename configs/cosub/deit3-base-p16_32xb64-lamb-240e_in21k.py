# Baseline twin of cosub_deit3-base-p16_32xb64-lamb-240e_in21k.py: DeiT III
# ImageNet-21k pretraining of ViT-B/16 (224 px, LAMB lr 1e-3, weight decay
# 0.02, 240 epochs, batch 32 x 64 = 2048, drop path 0.1 in every block,
# CutMix 1.0 without Mixup, softmax cross-entropy with label smoothing 0.1,
# Simple Random Crop + 3-Augment + ColorJitter 0.3, no repeated
# augmentation). No validation: the head has the 21k classes; finetune with
# deit3-base-p16_in21k-pre_*_in1k.py. Writes {work_dir}/backbone.pth.
_base_ = './deit3-small-p16_16xb128-lamb-240e_in21k.py'

model = dict(
    backbone=dict(arch='b', drop_path_rate=0.1),
    head=dict(in_channels=768))

train_dataloader = dict(batch_size=64)

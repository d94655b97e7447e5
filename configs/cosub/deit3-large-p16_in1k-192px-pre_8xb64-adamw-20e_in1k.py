# Baseline twin of cosub_deit3-large-p16_in1k-192px-pre_8xb64-adamw-20e_in1k
# .py: the 224 px finetuning of the ViT-L/16 of
# deit3-large-p16_32xb64-lamb-800e_in1k-192px.py (README_revenge.md: as
# ViT-B but --drop-path 0.45; 84.02 -> 84.86 in its logs), batch 8 x 64.
_base_ = './deit3-base-p16_in1k-192px-pre_8xb64-adamw-20e_in1k.py'

model = dict(
    backbone=dict(arch='l', drop_path_rate=0.45),
    head=dict(in_channels=1024),
    init_cfg=dict(
        checkpoint='work_dirs/'
        'deit3-large-p16_32xb64-lamb-800e_in1k-192px/epoch_800.pth'))

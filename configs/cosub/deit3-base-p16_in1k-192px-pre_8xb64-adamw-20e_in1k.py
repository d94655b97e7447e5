# Baseline twin of cosub_deit3-base-p16_in1k-192px-pre_8xb64-adamw-20e_in1k
# .py: DeiT III's second ImageNet-1k stage for ViT-B/16, finetuning at 224 px
# the model of deit3-base-p16_8xb256-lamb-800e_in1k-192px.py, as
# facebookresearch/deit README_revenge.md ("finetuning for ViT-B, L and H at
# resolution 224x224"; 82.82 -> 83.80 in its logs): --finetune loads the
# whole classifier, head included, with the position embedding resized
# (bicubic) from 12x12 to 14x14 (here DeiT3's load hook); --input-size 224;
# --drop-path 0.2 in every block; softmax cross-entropy with --smoothing 0.1
# on --mixup .8 / --cutmix 1.0 targets (no --bce-loss); AdamW lr 1e-5, 20
# epochs, batch 8 x 64 = 512 (schedule file); RandAugment, no 3-Augment, no
# repeated augmentation (dataset file); eval crop ratio 1.0.
_base_ = [
    '../_base_/datasets/imagenet_bs64_deit3-randaug_224.py',
    '../_base_/schedules/imagenet_bs512_adamw_20e-ft.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='DeiT3', arch='b', img_size=224, patch_size=16,
        drop_path_rate=0.2),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    init_cfg=dict(
        type='Pretrained',
        checkpoint='work_dirs/'
        'deit3-base-p16_8xb256-lamb-800e_in1k-192px/epoch_800.pth'),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))

custom_hooks = [
    dict(type='cosub_mm.DropPathRateHook', rule='uniform'),
    # {work_dir}/backbone.pth (224 px) for the segmentation configs
    dict(type='cosub_mm.BackboneExportHook'),
]

# UperNet + FCN aux (0.4) on a cosub-pretrained DeiT3-S, ADE20k 512x512,
# 160k iterations, 8 GPUs x 2 images, with cosub during finetuning too
# (cosub_mm.CosubEncoderDecoder, beyond the paper): two submodels per image
# through the backbone's stochastic depth, per-pixel CE against the labels
# and against each other's detached softmax (the decode head's ignore index
# counts in no term). Otherwise identical to
# deit3-small-p16-cosub-pre_upernet_8xb2-160k_ade20k-512x512.py.
_base_ = [
    '../_base_/models/upernet_deit3-p16_mln.py',
    'mmseg::_base_/datasets/ade20k.py', 'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/upernet_adamw-poly-160k.py'
]
default_scope = 'mmseg'
custom_imports = dict(imports=['cosub_mm'], allow_failed_imports=False)
checkpoint = 'work_dirs/cosub_deit3-small-p16_8xb256-lamb-800e_in1k/backbone.pth'  # noqa
model = dict(
    type='cosub_mm.CosubEncoderDecoder',
    cosub_loss=dict(type='cosub_mm.CosubLoss', loss_type='ce', lambda_=0.5),
    backbone=dict(
        arch='small',
        out_indices=(3, 5, 7, 11),
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[384] * 4, out_channels=384),
    decode_head=dict(in_channels=[384] * 4),
    auxiliary_head=dict(in_channels=384))
optim_wrapper = dict(
    optimizer=dict(lr=1e-4), paramwise_cfg=dict(layer_decay_rate=0.65))
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader

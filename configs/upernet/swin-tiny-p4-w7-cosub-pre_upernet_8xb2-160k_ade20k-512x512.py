# UperNet + FCN aux (0.4) on a cosub-pretrained Swin-T (mmpretrain
# SwinTransformer), ADE20k 512x512, 160k iterations, 8 GPUs x 2 images.
# mmseg's Swin recipe: AdamW lr 6e-5, weight decay 0.01, no layer decay.
_base_ = [
    '../_base_/models/upernet_swin.py',
    '../_base_/datasets/ade20k_sample-seeds.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/upernet_adamw-poly-160k.py'
]
default_scope = 'mmseg'
custom_imports = dict(imports=['cosub_mm'], allow_failed_imports=False)
checkpoint = 'pretrain/cosub_swin-tiny-p4-w7_in1k.pth'
model = dict(backbone=dict(init_cfg=dict(checkpoint=checkpoint)))
optim_wrapper = dict(
    optimizer=dict(lr=6e-5, weight_decay=0.01),
    paramwise_cfg=dict(
        layer_decay_rate=1.0,
        custom_keys={
            '.absolute_pos_embed': dict(decay_mult=0.0),
            '.relative_position_bias_table': dict(decay_mult=0.0),
        }))
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader

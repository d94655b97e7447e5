# UperNet + FCN aux (0.4) on a cosub-pretrained ConvNeXt-T (mmpretrain
# ConvNeXt), ADE20k 512x512, 160k iterations, 8 GPUs x 2 images.
# mmseg's ConvNeXt recipe: AdamW lr 1e-4, weight decay 0.05, layer decay
# 0.9 (mmpretrain's ConvNeXt ranks parameters by block depth).
_base_ = [
    '../_base_/models/upernet_convnext.py',
    '../_base_/datasets/ade20k_sample-seeds.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/upernet_adamw-poly-160k.py'
]
default_scope = 'mmseg'
custom_imports = dict(imports=['cosub_mm'], allow_failed_imports=False)
checkpoint = 'pretrain/cosub_convnext-tiny_in1k.pth'
model = dict(backbone=dict(init_cfg=dict(checkpoint=checkpoint)))
optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.9))
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader

# UperNet + FCN aux (0.4) on a cosub-pretrained DeiT3-S (mmpretrain DeiT3,
# LayerScale), ADE20k 512x512, 160k iterations, 8 GPUs x 2 images.
# The default checkpoint is the backbone that configs/cosub exports
# (BackboneExportHook); a CosubClassifier checkpoint, an exported backbone or
# an official deit/cosub checkpoint converted with
# tools/model_converters/deit_to_mmpretrain.py, e.g.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/upernet_deit3-p16_mln.py',
    '../_base_/datasets/ade20k_sample-seeds.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/upernet_adamw-poly-160k.py'
]
default_scope = 'mmseg'
custom_imports = dict(imports=['cosub_mm'], allow_failed_imports=False)
checkpoint = 'work_dirs/cosub_deit3-small-p16_8xb256-lamb-800e_in1k/backbone.pth'  # noqa
model = dict(
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

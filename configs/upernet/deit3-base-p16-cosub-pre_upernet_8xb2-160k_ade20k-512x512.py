# UperNet + FCN aux (0.4) on a cosub-pretrained DeiT3-B (mmpretrain DeiT3,
# LayerScale), ADE20k 512x512, 160k iterations, 8 GPUs x 2 images.
# The default checkpoint is the backbone that configs/cosub exports
# (BackboneExportHook); a CosubClassifier checkpoint, an exported backbone or
# an official deit/cosub checkpoint converted with
# tools/model_converters/deit_to_mmpretrain.py, e.g.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = './deit3-small-p16-cosub-pre_upernet_8xb2-160k_ade20k-512x512.py'
checkpoint = 'work_dirs/cosub_deit3-base-p16_8xb256-lamb-800e_in1k-192px/backbone.pth'  # noqa
model = dict(
    backbone=dict(
        arch='base',
        out_indices=(3, 5, 7, 11),
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[768] * 4, out_channels=768),
    decode_head=dict(in_channels=[768] * 4),
    auxiliary_head=dict(in_channels=768))

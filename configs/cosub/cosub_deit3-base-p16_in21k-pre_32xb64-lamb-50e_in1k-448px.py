# DeiT III ViT-B/16 ImageNet-1k finetuning at 448 px with cosub, from the
# cosub ImageNet-21k backbone: the baseline twin with the model type and
# the pretrained file changed.
_base_ = './deit3-base-p16_in21k-pre_32xb64-lamb-50e_in1k-448px.py'

model = dict(
    type='cosub_mm.CosubClassifier',
    cosub_loss=dict(type='cosub_mm.CosubLoss', binarize_target=False),
    backbone=dict(
        init_cfg=dict(
            checkpoint='work_dirs/'
            'cosub_deit3-base-p16_32xb64-lamb-240e_in21k/backbone.pth')))

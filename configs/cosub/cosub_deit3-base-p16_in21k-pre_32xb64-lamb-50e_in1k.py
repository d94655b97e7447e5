# DeiT III ViT-B/16 ImageNet-1k finetuning at 224 px with cosub, from the
# cosub ImageNet-21k backbone: the baseline twin with the model type and
# the pretrained file changed. The loss is the authors' --cosub BCE on the
# soft CutMix targets label-smoothed by 0.1 (--smoothing 0.1, no
# --bce-loss in their finetuning command).
_base_ = './deit3-base-p16_in21k-pre_32xb64-lamb-50e_in1k.py'

model = dict(
    type='cosub_mm.CosubClassifier',
    cosub_loss=dict(
        type='cosub_mm.CosubLoss', binarize_target=False,
        label_smooth_val=0.1),
    backbone=dict(
        init_cfg=dict(
            checkpoint='work_dirs/'
            'cosub_deit3-base-p16_32xb64-lamb-240e_in21k/backbone.pth')))

# DeiT III ViT-B/16 finetuned at 224 px with cosub, from the cosub 192 px
# model: the baseline twin with the model type and the pretrained file
# changed. The loss is the authors' --cosub BCE on the soft Mixup/CutMix
# targets label-smoothed by 0.1 (their finetuning command has --smoothing
# 0.1 and no --bce-loss).
_base_ = './deit3-base-p16_in1k-192px-pre_8xb64-adamw-20e_in1k.py'

model = dict(
    type='cosub_mm.CosubClassifier',
    cosub_loss=dict(
        type='cosub_mm.CosubLoss', binarize_target=False,
        label_smooth_val=0.1),
    init_cfg=dict(
        checkpoint='work_dirs/'
        'cosub_deit3-base-p16_8xb256-lamb-800e_in1k-192px/epoch_800.pth'))

# DeiT III ViT-L/16 finetuned at 224 px with cosub, from the cosub 192 px
# model: the baseline twin with the model type and the pretrained file
# changed (the loss as in the ViT-B cosub finetuning config).
_base_ = './deit3-large-p16_in1k-192px-pre_8xb64-adamw-20e_in1k.py'

model = dict(
    type='cosub_mm.CosubClassifier',
    cosub_loss=dict(
        type='cosub_mm.CosubLoss', binarize_target=False,
        label_smooth_val=0.1),
    init_cfg=dict(
        checkpoint='work_dirs/'
        'cosub_deit3-large-p16_32xb64-lamb-800e_in1k-192px/epoch_800.pth'))

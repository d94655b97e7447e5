# DeiT III ViT-L/16 ImageNet-21k pretraining with cosub: the baseline twin
# with the model type changed. The authors' cosub always uses BCE; here on
# the (soft) CutMix targets, not binarized, as without --bce-loss.
_base_ = './deit3-large-p16_32xb64-lamb-240e_in21k.py'

model = dict(
    type='cosub_mm.CosubClassifier',
    cosub_loss=dict(type='cosub_mm.CosubLoss', binarize_target=False))

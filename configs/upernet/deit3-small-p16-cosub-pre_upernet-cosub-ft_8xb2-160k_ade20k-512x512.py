# UperNet + FCN aux (0.4) on a cosub-pretrained DeiT3-S, ADE20k 512x512,
# 160k iterations, 8 GPUs x 2 images, with cosub during finetuning too
# (cosub_mm.CosubEncoderDecoder, beyond the paper): two submodels per image
# through the backbone's stochastic depth, per-pixel CE against the labels
# and against each other's detached softmax (the decode head's ignore index
# counts in no term). Otherwise the config it inherits.
_base_ = './deit3-small-p16-cosub-pre_upernet_8xb2-160k_ade20k-512x512.py'
model = dict(
    type='cosub_mm.CosubEncoderDecoder',
    cosub_loss=dict(type='cosub_mm.CosubLoss', loss_type='ce', lambda_=0.5))

# The baseline twin of the cosub demo: the same ViT, data, uniform stochastic
# depth, BCE loss and schedule, trained as a plain mmpretrain ImageClassifier
# (one network per image instead of two co-trained submodels).
_base_ = ['./cosub_vit-6l-128d-p4_1xb128-adamw-60e_fashion-mnist-2k.py']

# _delete_ drops the cosub-only keys (cosub_loss, drop_path_rule).
model = dict(
    _delete_=True,
    type='ImageClassifier',
    backbone={{_base_.model.backbone}},
    neck=None,
    head={{_base_.model.head}})

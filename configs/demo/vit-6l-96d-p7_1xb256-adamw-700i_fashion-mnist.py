# The baseline twin of the cosub demo: the same ViT, data, uniform stochastic
# depth, softmax cross-entropy and schedule, trained as a plain mmpretrain
# ImageClassifier (one network per image, no co-trained submodels).
_base_ = ['./cosub_vit-6l-96d-p7_1xb256-adamw-700i_fashion-mnist.py']

# _delete_ drops the cosub-only keys (cosub_loss, efficient_drop_path).
model = dict(
    _delete_=True,
    type='ImageClassifier',
    backbone={{_base_.model.backbone}},
    neck=None,
    head={{_base_.model.head}})

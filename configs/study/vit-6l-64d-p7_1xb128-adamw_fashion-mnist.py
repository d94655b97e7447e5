# The baseline arm of the Fashion-MNIST study: the cosub arm's backbone,
# head, data, uniform stochastic depth, softmax cross-entropy and schedule,
# trained as a plain mmpretrain ImageClassifier.
_base_ = ['./cosub_vit-6l-64d-p7_1xb128-adamw_fashion-mnist.py']

model = dict(
    # _delete_ drops the cosub-only keys (cosub_loss, efficient_drop_path).
    _delete_=True,
    type='ImageClassifier',
    backbone={{_base_.model.backbone}},
    neck=None,
    head={{_base_.model.head}})

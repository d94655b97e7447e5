# DeiT III ViT-S/16 trained with cosub (Touvron et al., CVPR 2023): the
# baseline twin with the model type changed; the loss is CosubLoss
# (BCE, lambda 0.5, two submodels).
_base_ = './deit3-small-p16_8xb256-lamb-800e_in1k.py'

model = dict(type='cosub_mm.CosubClassifier')

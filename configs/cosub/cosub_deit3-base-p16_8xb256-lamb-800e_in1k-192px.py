# DeiT III ViT-B/16 @192 trained with cosub: the baseline twin with the
# model type changed.
_base_ = './deit3-base-p16_8xb256-lamb-800e_in1k-192px.py'

model = dict(type='cosub_mm.CosubClassifier')

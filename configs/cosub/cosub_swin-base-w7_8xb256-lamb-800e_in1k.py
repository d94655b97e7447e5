# Swin-B with cosub (Touvron et al., CVPR 2023): the baseline twin
# with the model type changed.
_base_ = './swin-base-w7_8xb256-lamb-800e_in1k.py'

model = dict(type='cosub_mm.CosubClassifier')

# XCiT-M24/16 with cosub (Touvron et al., CVPR 2023): the baseline twin
# with the model type changed.
_base_ = './xcit-medium-24-p16_8xb256-lamb-800e_in1k.py'

model = dict(type='cosub_mm.CosubClassifier')

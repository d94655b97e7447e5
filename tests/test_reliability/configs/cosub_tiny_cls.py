# Tiny cosub classifier for the reliability tests: deterministic CPU run
# with Mixup/CutMix (numpy + torch RNG), random crops/flips (numpy RNG) and
# per-sample drop path (torch RNG). With 12 training images (batch 4) an
# epoch is 3 iterations, so a run of 6 crosses an epoch boundary.
_base_ = '../../data/configs/tiny_cls.py'
custom_imports = dict(
    imports=['cosub_mm', 'reliability_faults'], allow_failed_imports=False)
model = dict(
    type='cosub_mm.CosubClassifier',
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=6, val_interval=4)
val_dataloader = dict(batch_size=12)
test_dataloader = dict(batch_size=12)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False))
custom_hooks = [
    dict(type='cosub_mm.ExactResumeHook'),
    dict(type='cosub_mm.NonFiniteLossHook'),
    dict(type='cosub_mm.FaultInjectionHook'),  # inert unless FAULT_* set
]
randomness = dict(seed=0, deterministic=True)

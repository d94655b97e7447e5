# Tiny UperNet for the reliability tests, trained with cosub during
# finetuning (per-sample drop-path draws from torch's RNG) on 6 scenes with
# random resize/crop/flip (numpy RNG): iteration-based with mmengine's
# InfiniteSampler, like the ADE20k configs. Batch 2: an epoch of the
# sampler is 3 iterations.
_base_ = '../../data/configs/tiny_upernet.py'
custom_imports = dict(
    imports=['cosub_mm', 'reliability_faults'], allow_failed_imports=False)
model = dict(type='cosub_mm.CosubEncoderDecoder')
train_cfg = dict(max_iters=6, val_interval=4)
custom_hooks = [
    dict(type='cosub_mm.ExactResumeHook'),
    dict(type='cosub_mm.FaultInjectionHook'),  # inert unless FAULT_* set
]
randomness = dict(seed=0, deterministic=True)

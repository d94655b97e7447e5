# mmseg's ADE20k data with per-sample seeds (cosub_mm.SampleSeedDataset and
# SampleSeedSampler): each training sample's random resize/crop/flip comes
# from a seed of its place in the InfiniteSampler's stream, not from a
# worker's RNG, so --resume skips the trained samples instead of re-loading
# them (docs/reliability.md). The dataset's keys stay where mmseg has them.
_base_ = 'mmseg::_base_/datasets/ade20k.py'
train_dataloader = dict(
    sampler=dict(
        _delete_=True,
        type='cosub_mm.SampleSeedSampler',
        sampler=dict(type='InfiniteSampler', shuffle=True)),
    dataset=dict(
        type='cosub_mm.SampleSeedDataset',
        dataset=dict(type={{_base_.dataset_type}})))

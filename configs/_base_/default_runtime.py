# Runtime shared by the cosub_mm classification configs (mmpretrain scope).
default_scope = 'mmpretrain'
custom_imports = dict(imports=['cosub_mm'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3,
                    save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
    # Days-long runs: bit-exact --resume (RNG states in the checkpoint) and a
    # clear stop, naming the loss terms, at the first NaN/Inf loss.
    exact_resume=dict(type='cosub_mm.ExactResumeHook'),
    non_finite_loss=dict(type='cosub_mm.NonFiniteLossHook'),
)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)

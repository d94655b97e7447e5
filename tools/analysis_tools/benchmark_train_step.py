"""Time and memory of one training step: baseline vs cosub (masked drop
path) vs cosub (efficient drop path), measured side by side in one run.

A *step* is what the runner does per iteration: data preprocessing (with
Mixup), forward, loss, backward and an AdamW update (``model.train_step``).
Every block drops its residual branches with the same rate (the cosub
recipe). The baseline is the same network trained without cosub (batch B);
both cosub variants see 2B rows (the batch concatenated with itself).

Time: the variants live in one process and are stepped round-robin
(baseline, masked, efficient, baseline, ...) after warm-up steps, so load
from other processes hits all of them alike; the median of N steps is
reported.

Memory: on CPU, one forked child process per variant (forked before any
model exists, so no allocator cache of another variant is reused) builds
the model, runs warm-up steps (which
also allocate the optimizer state), hands the memory that glibc keeps
cached from them back to the kernel (``malloc_trim``; otherwise the resident
set before the step would already hold the warm-up's freed activations),
resets the kernel's resident-set high-water mark (``/proc/self/clear_refs``),
runs the measured steps and reads ``VmHWM``. *Step peak* = that high-water
mark minus the resident set before the steps: the activations, gradients and
temporaries of a step, without weights, optimizer state and the
Python/library baseline. *Process peak* is the high-water mark itself (what
must fit in RAM). On CUDA the same two numbers come
from ``torch.cuda.max_memory_allocated``.

Allocator (CPU): by default (``--malloc keep``) glibc is told to keep the
memory a step frees for the next step, as PyTorch's caching allocator does
on CUDA. With glibc's own defaults (``--malloc default``) every block over
32 MiB is mmap'd and unmapped again, and the heap top is trimmed, so each
step page-faults its big activations back in, in the kernel's time; the
2x-row cosub steps pay for that more than proportionally, an artefact of
the allocator, not of the method.

Example:
    python tools/analysis_tools/benchmark_train_step.py --arch base \\
        --batch-size 16 --drop-path-rate 0.2 --steps 5
    python tools/analysis_tools/benchmark_train_step.py --config \\
        configs/cosub/cosub_pit-base_8xb256-lamb-800e_in1k.py
    # the segmentation step: UperNet + DeiT III-S at 128 px
    python tools/analysis_tools/benchmark_train_step.py --seg \\
        --batch-size 4 --steps 5
    # timm's DeiT III-S in mmpretrain's TIMMBackbone (EfficientTimmBlock)
    python tools/analysis_tools/benchmark_train_step.py --timm \\
        --batch-size 16 --steps 5
    # eager and torch.compile'd backbones side by side, bf16 autocast
    python tools/analysis_tools/benchmark_train_step.py --compile both \\
        --amp bf16 --no-memory

Compile (``--compile on|both``) compiles the backbone in place
(``nn.Module.compile``); a variant measured compiled is named
``<variant>+compile``. Its warm-up steps also absorb the recompilations
while the plan's index sizes become dynamic. AMP (``--amp bf16|fp16``)
runs the step under autocast: on CUDA through mmengine's
``AmpOptimWrapper`` (fp16 with its dynamic loss scaler), on CPU (bf16 only;
mmengine's wrapper refuses CPU) with ``torch.autocast`` around the step.
On a GPU machine, ``tools/analysis_tools/benchmark_gpu.sh`` runs the whole
ViT-B/16 table in one call.
"""
import argparse
import copy
import ctypes
import functools
import gc
import json
import os
import re
import statistics
import sys
import time
from typing import Dict, List, Optional, Tuple

VARIANTS = ('baseline', 'cosub-masked', 'cosub-efficient',
            'cosub-efficient-unshared')
DEFAULT_VARIANTS = VARIANTS[:3]
COSUB_KEYS = ('cosub_loss',
              'efficient_drop_path', 'share_copies')
COMPILED = '+compile'  # appended to a variant measured compiled


def _suffix(run: str) -> str:
    """``COMPILED`` for a compiled run, else ''."""
    return COMPILED if run.endswith(COMPILED) else ''


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--config', help='an mmpretrain config whose `model` is measured '
        '(default: DeiT III ViT of --arch, patch 16)')
    parser.add_argument('--arch', default='small',
                        help='DeiT III arch without --config (small, base)')
    parser.add_argument('--img-size', type=int,
                        help='default: the config\'s, else 224')
    parser.add_argument('--batch-size', type=int, default=16,
                        help='unique images per step (cosub runs 2x rows)')
    parser.add_argument('--num-classes', type=int,
                        help='default: the config\'s, else 1000')
    parser.add_argument('--drop-path-rate', type=float,
                        help='rate set in every block (uniform rule); '
                        'default: the config\'s, else 0.2')
    parser.add_argument('--steps', type=int, default=5,
                        help='measured steps per variant (median)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--mem-steps', type=int, default=1,
                        help='measured steps per memory child process')
    parser.add_argument(
        '--variants', nargs='+', default=list(DEFAULT_VARIANTS),
        choices=VARIANTS, help='cosub-efficient shares the branches of '
        'identical copies (the default of CosubClassifier); '
        'cosub-efficient-unshared does not')
    parser.add_argument(
        '--malloc', choices=('default', 'keep'), default='keep',
        help="'keep': glibc keeps freed memory (no mmap'd blocks, no trim) "
        'instead of returning it to the kernel and page-faulting it back '
        'in the next step; applies to every variant alike')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cpu',
                        help="'cpu' or 'cuda[:N]'")
    parser.add_argument(
        '--amp', nargs='?', const='bf16', default='off',
        choices=('off', 'bf16', 'fp16'),
        help='autocast dtype (plain --amp: bf16); fp16 needs CUDA')
    parser.add_argument(
        '--compile', choices=('off', 'on', 'both'), default='off',
        help='torch.compile the backbone: on (every variant compiled) or '
        'both (each variant eager and compiled, side by side)')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the memory measurement')
    parser.add_argument('--no-time', action='store_true',
                        help='skip the timing (memory only)')
    parser.add_argument(
        '--seg', action='store_true',
        help='the segmentation step: CosubEncoderDecoder, UperNet + DeiT '
        'III of --arch (default 128 px, 150 classes)')
    parser.add_argument(
        '--timm', action='store_true',
        help="timm's DeiT III of --arch in mmpretrain's TIMMBackbone (needs "
        'timm: pip install cosub_mm[timm]); the efficient variants use '
        'EfficientTimmBlock')
    parser.add_argument('--tiny', action='store_true',
                        help='a 2-block 32 px ViT: checks the tool quickly')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument(
        '--md', help='also write the table here as a generated markdown '
        'file (e.g. docs/results/benchmark_compile.md, copied into the '
        'README by tools/misc/update_readme.py)')
    args = parser.parse_args(argv)
    if args.tiny:
        args.img_size = 32 if not args.seg else 64
        args.num_classes = 10
    if args.seg and args.config:
        parser.error('--seg measures its own UperNet, not a --config')
    if args.timm and (args.seg or args.config):
        parser.error('--timm measures its own classifier, not --seg or a '
                     '--config')
    if args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            parser.error(f'--device {args.device}: this machine has no CUDA '
                         'device (torch sees none); run it where one is, or '
                         'use --device cpu')
    elif args.device != 'cpu':
        parser.error(f"--device must be 'cpu' or 'cuda[:N]', got "
                     f'{args.device!r}')
    if args.amp == 'fp16' and not args.device.startswith('cuda'):
        parser.error('--amp fp16 needs --device cuda (its loss scaler is '
                     "mmengine's CUDA AmpOptimWrapper); on CPU use --amp "
                     'bf16')
    args.runs = [v + suffix for v in args.variants
                 for suffix in {'off': ('', ), 'on': (COMPILED, ),
                                'both': ('', COMPILED)}[args.compile]]
    if args.seg:
        args.img_size = args.img_size or 128
        args.num_classes = args.num_classes or 150
    args.in_channels = 3
    if args.config:
        _defaults_from_config(args)
    for key, value in (('img_size', 224), ('num_classes', 1000),
                       ('drop_path_rate', 0.2)):
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


@functools.lru_cache(maxsize=None)
def _load_config(path: str):
    """The config, parsed once (every variant and child builds from it)."""
    from mmengine.config import Config
    return Config.fromfile(path)


def _defaults_from_config(args) -> None:
    """Image size, classes, channels and drop rate the config trains with."""
    cfg = _load_config(args.config)
    model = cfg.model
    img_size = model.backbone.get('img_size')
    if args.img_size is None and img_size is not None:
        args.img_size = img_size if isinstance(img_size, int) else \
            img_size[0]
    if args.num_classes is None:
        args.num_classes = model.head.get('num_classes')
    if args.drop_path_rate is None:
        args.drop_path_rate = model.get('drop_path_rate') or \
            model.backbone.get('drop_path_rate')
    args.in_channels = model.backbone.get('in_channels', 3)


def seg_model(args) -> dict:
    """UperNet + FCN head on a DeiT III of ``args.arch``
    (CosubEncoderDecoder)."""
    if args.tiny:
        arch = dict(embed_dims=32, num_layers=4, num_heads=2,
                    feedforward_channels=64)
        dims, out_indices = 32, (0, 1, 2, 3)
    else:
        from mmpretrain.models.backbones import DeiT3
        arch = args.arch
        dims = DeiT3.arch_zoo[arch]['embed_dims']
        depth = DeiT3.arch_zoo[arch]['num_layers']
        out_indices = tuple(depth * i // 4 - 1 for i in (1, 2, 3, 4))
    norm = dict(type='BN', requires_grad=True)
    return dict(
        type='cosub_mm.CosubEncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
            seg_pad_val=255, size=(args.img_size, args.img_size)),
        backbone=dict(type='mmpretrain.DeiT3', arch=arch,
                      img_size=args.img_size, patch_size=16,
                      out_indices=out_indices, out_type='featmap',
                      drop_path_rate=args.drop_path_rate),
        neck=dict(type='MultiLevelNeck', in_channels=[dims] * 4,
                  out_channels=dims, scales=[4, 2, 1, 0.5]),
        decode_head=dict(type='UPerHead', in_channels=[dims] * 4,
                         in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
                         channels=dims, dropout_ratio=0.0,
                         num_classes=args.num_classes, norm_cfg=norm,
                         align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss')),
        auxiliary_head=dict(type='FCNHead', in_channels=dims, in_index=2,
                            channels=dims // 2, num_convs=1,
                            concat_input=False, dropout_ratio=0.0,
                            num_classes=args.num_classes, norm_cfg=norm,
                            align_corners=False,
                            loss_decode=dict(type='CrossEntropyLoss',
                                             loss_weight=0.4)),
        train_cfg=dict(), test_cfg=dict(mode='whole'))


def timm_backbone(args) -> tuple:
    """timm's DeiT III of ``args.arch`` in mmpretrain's ``TIMMBackbone``
    (no pretrained weights) and its width."""
    backbone = dict(type='mmpretrain.TIMMBackbone', pretrained=False,
                    img_size=args.img_size,
                    drop_path_rate=args.drop_path_rate)
    if args.tiny:
        backbone.update(model_name='deit3_small_patch16_224', patch_size=8,
                        embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)
        return backbone, 32
    from mmpretrain.models.backbones import DeiT3
    backbone.update(model_name=f'deit3_{args.arch}_patch16_224')
    return backbone, DeiT3.arch_zoo[args.arch]['embed_dims']


def base_model(args) -> dict:
    """The cosub model config of the run (CosubClassifier, or with
    ``--seg`` CosubEncoderDecoder)."""
    if args.seg:
        return seg_model(args)
    if args.config:
        cfg = _load_config(args.config)
        model = cfg.model.to_dict()
        if model['type'] not in ('cosub_mm.CosubClassifier',
                                 'CosubClassifier'):
            raise ValueError(f'{args.config}: model.type must be '
                             f"cosub_mm.CosubClassifier, got {model['type']}")
        model.pop('init_cfg', None)  # nothing may be downloaded
        model['backbone'].pop('init_cfg', None)
        if 'data_preprocessor' not in model and cfg.get('data_preprocessor'):
            # the runner merges the top-level one into the model
            model['data_preprocessor'] = dict(
                type='ClsDataPreprocessor', **cfg.data_preprocessor)
        return model  # and its own train_cfg (batch augments) or none
    if args.tiny:
        arch = dict(embed_dims=32, num_layers=2, num_heads=2,
                    feedforward_channels=64)
        patch, dims = 8, 32
    else:
        from mmpretrain.models.backbones import DeiT3
        arch = args.arch
        patch, dims = 16, DeiT3.arch_zoo[arch]['embed_dims']
    backbone = dict(type='mmpretrain.DeiT3', arch=arch,
                    img_size=args.img_size, patch_size=patch,
                    drop_path_rate=args.drop_path_rate)
    neck = None
    if args.timm:
        # TIMMBackbone returns every token: the neck takes the class token
        backbone, dims = timm_backbone(args)
        neck = dict(type='cosub_mm.TokenPooling')
    return dict(
        type='cosub_mm.CosubClassifier',
        backbone=backbone,
        neck=neck,
        head=dict(type='VisionTransformerClsHead',
                  num_classes=args.num_classes, in_channels=dims,
                  loss=dict(type='CrossEntropyLoss', use_sigmoid=True)),
        data_preprocessor=dict(
            type='ClsDataPreprocessor', num_classes=args.num_classes,
            mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
            to_rgb=True),
        train_cfg=dict(augments=[
            dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))


def variant_model(model: dict, variant: str, args) -> dict:
    model = copy.deepcopy(model)
    if variant == 'baseline':
        for key in COSUB_KEYS:
            model.pop(key, None)
        model['type'] = ('cosub_mm.LayerDecayEncoderDecoder' if args.seg
                         else 'mmpretrain.ImageClassifier')
    else:
        model.update(efficient_drop_path=variant.startswith('cosub-eff'),
                     share_copies=variant == 'cosub-efficient')
    return model


def build(run: str, args):
    """Model, optimizer wrapper and a fixed batch of unique images.

    ``run`` is a variant, ``+compile`` appended for a compiled backbone.
    """
    import torch
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    from mmpretrain.structures import DataSample

    import cosub_mm  # noqa: F401
    from cosub_mm.models.drop_path import set_drop_path_rates
    from cosub_mm.registry import MODELS

    from mmengine.registry import DefaultScope
    variant = run.removesuffix(COMPILED)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(
            'mmseg' if args.seg else 'mmpretrain'):
        model = MODELS.build(variant_model(base_model(args), variant, args))
    # every variant: the same uniform rate (DropPathRateHook's rule)
    set_drop_path_rates(model.backbone, args.drop_path_rate, 'uniform')
    model.to(args.device).train()
    if _suffix(run):
        model.backbone.compile()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = dict(bf16='bfloat16', fp16='float16').get(args.amp)
    if dtype and args.device.startswith('cuda'):
        wrapper = AmpOptimWrapper(
            optim, dtype=dtype,
            loss_scale='dynamic' if dtype == 'float16' else 1.0)
    else:
        wrapper = OptimWrapper(optim)
        if dtype:  # CPU bf16: mmengine's AmpOptimWrapper refuses CPU
            wrapper.optim_context = functools.partial(
                _cpu_autocast_context, wrapper.optim_context)
    g = torch.Generator().manual_seed(1)
    if args.seg:
        return model, wrapper, seg_batch(args, g)
    data = dict(
        inputs=[
            torch.randint(0, 256,
                          (args.in_channels, args.img_size, args.img_size),
                          generator=g, dtype=torch.uint8)
            for _ in range(args.batch_size)
        ],
        data_samples=[
            DataSample().set_gt_label(i % args.num_classes)
            for i in range(args.batch_size)
        ])
    return model, wrapper, data


def _cpu_autocast_context(context, model):
    """OptimWrapper's context with CPU bf16 autocast around it."""
    import contextlib

    import torch
    stack = contextlib.ExitStack()
    stack.enter_context(context(model))
    stack.enter_context(torch.autocast('cpu', dtype=torch.bfloat16))
    return stack


def seg_batch(args, g) -> dict:
    """Random images and blocky label maps of ``args.num_classes``."""
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    size = args.img_size
    inputs, samples = [], []
    for _ in range(args.batch_size):
        inputs.append(torch.randint(0, 256, (3, size, size), generator=g,
                                    dtype=torch.uint8))
        label = torch.randint(0, args.num_classes, (1, size // 8, size // 8),
                              generator=g)
        label = label.repeat_interleave(8, 1).repeat_interleave(8, 2)
        sample = SegDataSample(metainfo=dict(
            img_shape=(size, size), pad_shape=(size, size),
            ori_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def step(model, wrapper, data, device: str) -> float:
    import torch
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    start = time.perf_counter()
    model.train_step(data, wrapper)
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def keep_freed_memory() -> None:
    """Make glibc keep freed memory for reuse (a caching allocator, as on
    CUDA): no block is served by its own mmap and the heap top is never
    trimmed, so big activations do not page-fault in again every step."""
    libc = ctypes.CDLL('libc.so.6')
    m_mmap_max, m_trim_threshold = -4, -1
    if not (libc.mallopt(m_mmap_max, 0)
            and libc.mallopt(m_trim_threshold, -1)):  # -1: SIZE_MAX
        raise RuntimeError('mallopt failed: --malloc keep needs glibc')


def _status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        return int(re.search(rf'{field}:\s+(\d+)', f.read()).group(1))


def measure_memory(variant: str, args) -> Dict[str, float]:
    """Peak memory of a step (run inside a fresh process)."""
    import torch
    model, wrapper, data = build(variant, args)
    for _ in range(args.warmup):
        step(model, wrapper, data, args.device)
    if args.device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        for _ in range(args.mem_steps):
            step(model, wrapper, data, args.device)
        peak = torch.cuda.max_memory_allocated()
        return dict(step_peak_mib=(peak - before) / 2**20,
                    process_peak_mib=peak / 2**20)
    gc.collect()
    try:  # return glibc's cached free memory, so RSS = live memory
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset VmHWM to the current resident set
    before = _status_kib('VmRSS')
    for _ in range(args.mem_steps):
        step(model, wrapper, data, args.device)
    peak = _status_kib('VmHWM')
    return dict(step_peak_mib=(peak - before) / 1024,
                process_peak_mib=peak / 1024)


def _memory_child(variant: str, args, queue) -> None:
    try:
        queue.put(measure_memory(variant, args))
    except BaseException as e:  # report it to the parent, not to stderr
        queue.put(dict(error=f'{type(e).__name__}: {e}'))


def memory_in_child(variant: str, args) -> Dict[str, float]:
    """Run :func:`measure_memory` in a forked child (imports are shared,
    the models and allocator state are not)."""
    import multiprocessing
    ctx = multiprocessing.get_context('fork')
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(variant, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if 'error' in result:
        raise RuntimeError(f'memory run of {variant}: {result["error"]}')
    return result


def computed_fraction(model) -> Optional[float]:
    """Branch rows the last planned step computed / the masked form's.

    The masked form runs every branch on every row; a planned step skips
    dropped rows and computes once for twins, so this fraction bounds what
    the efficient path can save on the branches. None without a plan.
    """
    plan = getattr(model, 'last_plan', None)
    if plan is None or plan.keep.size == 0:
        return None
    return plan.computed_rows / plan.keep.size  # keep: (branches, rows)


def time_interleaved(args) -> Tuple[Dict[str, List[float]],
                                    Dict[str, List[float]]]:
    """Step times of every variant, interleaved, and the planned
    variants' :func:`computed_fraction` of each timed step."""
    runs = {v: build(v, args) for v in args.runs}
    for v in args.runs:
        # compiled: the first steps compile, then recompile once the plan's
        # index sizes turn out to vary (dynamic shapes from then on)
        for _ in range(args.warmup + (3 if _suffix(v) else 0)):
            step(*runs[v], args.device)
    times: Dict[str, List[float]] = {v: [] for v in args.runs}
    fractions: Dict[str, List[float]] = {}
    for i in range(args.steps):
        # rotate the order so no variant always follows the same one
        order = args.runs[i % len(args.runs):] + \
            args.runs[:i % len(args.runs)]
        for v in order:
            times[v].append(step(*runs[v], args.device))
            fraction = computed_fraction(runs[v][0])
            if fraction is not None:
                fractions.setdefault(v, []).append(fraction)
            print(f'round {i}: {v} {times[v][-1]:.3f} s', file=sys.stderr,
                  flush=True)  # progress, and partial results if cut short
    return times, fractions


def count_graph_breaks(variant: str, args) -> Dict[str, int]:
    """Graphs and graph breaks Dynamo makes of one training loss.

    ``torch._dynamo.explain`` of ``model.loss`` (what mmengine's
    ``compile = True`` compiles, through ``train_step``) on a preprocessed
    batch, the model eager.
    """
    import torch
    model, _, data = build(variant, args)
    data = model.data_preprocessor(data, True)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model.loss)(data['inputs'],
                                                  data['data_samples'])
    torch._dynamo.reset()
    return dict(graphs=explained.graph_count,
                graph_breaks=explained.graph_break_count)


def table(results: Dict[str, dict], args) -> str:
    ref = results.get('baseline')
    lines = [
        '| variant | rows/step | step time (s, median) | images/s '
        '| time / baseline | step peak (MiB) | step peak / baseline '
        '| process peak (MiB) | process peak / baseline |', '|---' * 9 + '|'
    ]

    def ratio(v, key):
        base = results.get('baseline' + _suffix(v), ref)
        return f'{results[v][key] / base[key]:.2f}' if base and key in base \
            and key in results[v] else 'n/a'

    def num(v, key, fmt):
        return format(results[v][key], fmt) if key in results[v] else 'n/a'

    for v in args.runs:
        rows = args.batch_size * (1 if v.startswith('baseline') else 2)
        lines.append(
            f"| {v} | {rows} | {num(v, 'time_s', '.3f')} | "
            f"{num(v, 'images_per_s', '.1f')} | "
            f"{ratio(v, 'time_s')} | {num(v, 'step_peak_mib', '.0f')} | "
            f"{ratio(v, 'step_peak_mib')} | "
            f"{num(v, 'process_peak_mib', '.0f')} | "
            f"{ratio(v, 'process_peak_mib')} |")
    for v in (e + s for s in ('', COMPILED)
              for e in ('cosub-efficient', 'cosub-efficient-unshared')):
        masked = 'cosub-masked' + _suffix(v)
        if v not in results or masked not in results:
            continue
        m, e = results[masked], results[v]
        parts = [f'{name} {e[key] / m[key]:.2f}'
                 for name, key in (('time', 'time_s'),
                                   ('step peak', 'step_peak_mib'),
                                   ('process peak', 'process_peak_mib'))
                 if key in e and key in m]
        if 'computed_fraction' in e:
            parts.append('branch rows computed '
                         f"{e['computed_fraction']:.3f} (the submodel "
                         'plans\' bound on the branches)')
        lines.append(f'\n{v} / {masked}: ' + ', '.join(parts))
    breaks = [f"{v} {results[v]['graph_breaks']} ({results[v]['graphs']} "
              'graphs)' for v in args.runs if 'graph_breaks' in results[v]]
    if breaks:
        lines.append('\nGraph breaks of one training loss '
                     '(`torch._dynamo.explain(model.loss)`): '
                     + ', '.join(breaks))
    return '\n'.join(lines)


def main(argv=None) -> dict:
    load = os.getloadavg()[0]  # before this run adds its own
    args = parse_args(argv)
    import torch

    import cosub_mm  # noqa: F401  (imported once, before the forks)
    torch.set_num_threads(args.threads)
    if args.malloc == 'keep' and args.device == 'cpu':
        keep_freed_memory()  # before the forks: children inherit it
    results: Dict[str, dict] = {v: {} for v in args.runs}
    if not args.no_memory:
        # eager runs only: compiling again in every child is slow
        for v in [r for r in args.runs if not _suffix(r)]:
            results[v].update(memory_in_child(v, args))
            print(f'memory: {v} {results[v]}', file=sys.stderr, flush=True)
    if args.compile != 'off':
        for v in [r for r in args.runs if not _suffix(r)]:
            results[v].update(count_graph_breaks(v, args))
    if not args.no_time:
        times, fractions = time_interleaved(args)
        for v, got in fractions.items():
            results[v]['computed_fraction'] = statistics.mean(got)
        for v in args.runs:
            results[v]['time_s'] = statistics.median(times[v])
            results[v]['times_s'] = times[v]
            results[v]['images_per_s'] = args.batch_size / \
                results[v]['time_s']
    desc = args.config or (
        'tiny ViT' if args.tiny else f'DeiT III-{args.arch}/16')
    if args.timm:
        desc = f'timm {desc} (TIMMBackbone)'
    if args.seg:
        desc = f'UperNet + {desc}'
    setup = (
        f'{desc} @{args.img_size}, batch {args.batch_size} unique images, '
        f'uniform drop path {args.drop_path_rate}, {args.threads} threads, '
        f'{args.device}{" " + args.amp if args.amp != "off" else ""}'
        f'{", compile " + args.compile if args.compile != "off" else ""}'
        f'{", malloc " + args.malloc if args.device == "cpu" else ""}; '
        'median of '
        f'{args.steps} interleaved steps after {args.warmup} warm-up')
    print(setup + '\n')
    print(table(results, args))
    if args.md:
        with open(args.md, 'w') as f:
            given = list(sys.argv[1:] if argv is None else argv)
            for flag in ('--md', '--json'):  # where it wrote, not what ran
                if flag in given:
                    del given[given.index(flag):given.index(flag) + 2]
            command = ' '.join(given)
            f.write('# Train-step benchmark\n\n'
                    'Generated by `tools/analysis_tools/'
                    f'benchmark_train_step.py {command}`;'
                    ' do not edit by hand.\n\n'
                    f'{setup}; 1-min load at the start '
                    f'{load:.1f}'
                    + (f'; the record: `{args.json}`' if args.json else '')
                    + f'.\n\n{table(results, args)}\n')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(setup=desc, args=vars(args), results=results), f,
                      indent=1)
    return results


if __name__ == '__main__':
    main()

"""Cosub vs baseline on Fashion-MNIST: a study with converged baselines.

Trains the demo configs (``configs/demo/*fashion-mnist.py``, cosub and its
baseline twin) through ``tools/train.py`` in regimes of different training
set sizes. In each regime, in this order (each stage starts once the runs it
depends on are recorded):

1. a one-seed sweep of the baseline's learning rate, weight decay and drop
   rate, chosen on a validation split held out of the training images (the
   last 5,000); the test set is evaluated once per run, never used to
   choose;
2. the convergence check: the chosen baseline at twice the length must gain
   less than 0.5 validation points, else the length doubles;
3. the headline: cosub with the same recipe and the baseline, paired by
   seed (same initialisation and data order);
4. equal compute: the baseline trained for as many more iterations as a
   cosub iteration costs more, measured side by side in one process (a
   record under ``docs/results/runs/step_cost/``);
5. a one-seed sweep of cosub's own knobs (drop rate, λ, BCE) and, where
   the budget allows, cosub at twice the length beside the convergence
   check's baseline of that length (the paper's gains are at long
   schedules).

Each finished run writes one JSON record under ``docs/results/runs/``
(config hash, spec, validation curve, test top-1, wall time, machine load);
``docs/results/fashion_mnist.md``, its PNG and ``fashion_mnist_summary.json``
are generated from the records only, so the study runs in pieces on any
machine: a command restarts where the records end, and a run still going
when ``--max-hours`` ends stops at its next checkpoint (of 32) for the next
command to continue exactly. A record whose config
hash no longer matches what the current code would run is reported as
stale and left out.

Usage:
    python tools/analysis_tools/replicate_fashion_mnist.py --regime n5000 \\
        --max-hours 2          # one piece; rerun to continue
    python tools/analysis_tools/replicate_fashion_mnist.py --summarise-only
    python tools/analysis_tools/replicate_fashion_mnist.py --quick  # minutes
"""
import argparse
import functools
import hashlib
import json
import os
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from cosub_mm import study
from cosub_mm.runs import (REPO, check_fashion_mnist, metric_history,
                           train_in_pieces)
from cosub_mm.study import (ARCHIVE, archived, interval_text,  # noqa: F401
                            load_records, machine_load, mean_std,
                            paired_interval, write_record)

COSUB_CFG = 'configs/study/cosub_vit-6l-64d-p7_1xb128-adamw_fashion-mnist.py'
BASE_CFG = 'configs/study/vit-6l-64d-p7_1xb128-adamw_fashion-mnist.py'
DATA_ROOT = 'data/fashion_mnist'
NUM_TRAIN_SPLIT = 60000
CONVERGED_GAIN = 0.5  # validation points gained by doubling the length

# (lr, weight decay, drop rate) of the baseline sweep; the first is the
# demo's recipe.
GRID = ((2e-3, 0.05, 0.1), (1e-3, 0.05, 0.1), (4e-3, 0.05, 0.1),
        (2e-3, 0.05, 0.2), (2e-3, 0.15, 0.1))
# Cosub's own knobs, each changed alone from the chosen recipe.
COSUB_KNOBS = (dict(drop='other'), dict(lam=0.25), dict(lam=0.75),
               dict(loss='bce'))
#: cosub at twice the chosen length (its baseline: the convergence check's)
LONGER = dict(length=2)

REGIMES: Dict[str, dict] = {
    # num_train: the first N training images; val: the last num_val.
    'n1000': dict(num_train=1000, num_val=5000, iters=1000,
                  seeds=(0, 1, 2, 3, 4), grid=GRID, knobs=COSUB_KNOBS),
    'n5000': dict(num_train=5000, num_val=5000, iters=2000,
                  seeds=(0, 1, 2, 3, 4), grid=GRID,
                  knobs=COSUB_KNOBS + (LONGER, )),
    'n55000': dict(num_train=55000, num_val=5000, iters=4000,
                   seeds=(0, 1, 2), grid=GRID[:3], knobs=COSUB_KNOBS[:1]),
    # A smoke run of every stage in a few minutes.
    'quick': dict(num_train=1000, num_val=500, iters=20, seeds=(0, 1),
                  grid=GRID[:2], knobs=COSUB_KNOBS[3:], num_test=1000,
                  max_doublings=0),
}


# ---------------------------------------------------------------- runs ----
@functools.lru_cache(maxsize=None)
def protocol() -> dict:
    """What both arms share, read from the baseline config."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, BASE_CFG))
    bb = cfg.model.backbone
    return dict(batch=cfg.train_dataloader.batch_size,
                patch=bb.patch_size, **bb.arch)


def epochs(iters: int, num_train: int) -> float:
    """Passes over the training subset in ``iters`` iterations."""
    return iters * protocol()['batch'] / num_train


def make_spec(regime: str, arm: str, lr: float, wd: float, drop: float,
              iters: int, seed: int, lam: float = 0.5,
              loss: str = 'ce') -> dict:
    """A run's identity: everything that differs between runs."""
    spec = dict(regime=regime, arm=arm, lr=lr, wd=wd, drop=drop,
                iters=int(iters), seed=seed)
    if arm == 'cosub':
        spec.update(lam=lam, loss=loss)
    return spec


def run_name(spec: dict) -> str:
    """A file-safe name of a run spec."""
    name = f"{spec['arm']}_lr{spec['lr']:g}_wd{spec['wd']:g}_dp{spec['drop']:g}"
    if spec['arm'] == 'cosub':
        name += f"_lam{spec['lam']:g}_{spec['loss']}"
    return name + f"_{spec['iters']}i_s{spec['seed']}"


def config_text(spec: dict) -> str:
    """The run's config: the demo config and the spec's overrides."""
    reg = REGIMES[spec['regime']]
    base = osp.join(REPO, COSUB_CFG if spec['arm'] == 'cosub' else BASE_CFG)
    val_start = NUM_TRAIN_SPLIT - reg['num_val']
    if reg['num_train'] > val_start:
        raise ValueError(f"regime {spec['regime']}: num_train "
                         f"{reg['num_train']} overlaps the validation split")
    model = f"dict(backbone=dict(drop_path_rate={spec['drop']!r})"
    if spec['arm'] == 'cosub':
        model += (f", cosub_loss=dict(lambda_={spec['lam']!r}, "
                  f"loss_type={spec['loss']!r})")
    lines = [
        f'_base_ = [{base!r}]',
        f'model = {model})',
        f"train_dataloader = dict(dataset=dict(indices={reg['num_train']}))",
        '# held out of the training images: every choice is made on it',
        "val_dataloader = dict(dataset=dict(split='train', test_mode=False, "
        f'indices=list(range({val_start}, {NUM_TRAIN_SPLIT}))))',
        f"optim_wrapper = dict(optimizer=dict(lr={spec['lr']!r}, "
        f"weight_decay={spec['wd']!r}))",
        f"train_cfg = dict(val_interval={max(1, spec['iters'] // 10)})",
        f"randomness = dict(seed={spec['seed']})",
    ]
    if reg.get('num_test'):
        lines.append(f"test_dataloader = dict(dataset=dict("
                     f"indices={reg['num_test']}))")
    return '\n'.join(lines) + '\n'


def config_hash(spec: dict, work_dir: str) -> str:
    """Hash of the resolved config the current code trains for ``spec``.

    The seed is left out (it is in the spec), so paired runs of one recipe
    share a hash; anything else that changes the run changes it.
    """
    from cosub_mm.utils import scale_schedule
    return study.resolved_hash(
        config_text(spec), osp.join(work_dir, '_hash', run_name(spec) + '.py'),
        adjust=lambda cfg: scale_schedule(cfg, spec['iters']))


def val_curve(record: dict) -> List[Tuple[int, float]]:
    """``(iteration, val top-1)`` of a record.

    Records whose runner logged every validation at step 0 (mmengine's
    ``log_metric_by_epoch`` default in an iteration-based run) get the
    iterations of their ``val_interval`` back.
    """
    curve = [tuple(p) for p in record['val_curve']]
    if len(curve) > 1 and len({s for s, _ in curve}) == 1:
        every = max(1, record['spec']['iters'] // 10)
        curve = [((i + 1) * every, v) for i, (_, v) in enumerate(curve)]
    return curve


def execute(spec: dict, work_dir: str, records_dir: str,
            jobs: int, echo=print,
            hours: Optional[float] = None) -> Optional[dict]:
    """Train one run, or its next piece, and record it at its end.

    With ``hours`` the run stops at its first checkpoint after them and the
    next call continues it exactly (``train_in_pieces``; the runtime's
    ``ExactResumeHook``). Returns the record, or None while unfinished.
    """
    name = run_name(spec)
    run_dir = osp.join(work_dir, spec['regime'], name)
    os.makedirs(run_dir, exist_ok=True)
    cfg_path = osp.join(run_dir, 'config.py')
    with open(cfg_path, 'w') as f:
        f.write(config_text(spec))
    run = train_in_pieces(
        cfg_path, run_dir, spec['iters'], config_hash(spec, work_dir),
        ['--length', str(spec['iters']), '--test'], hours=hours, threads=1)
    if run is None:
        echo(f'{name}: stopped at the time limit, continued next time')
        return None
    scalars = run['scalars']
    val = metric_history(scalars, 'accuracy/top1')
    times = [t for _, t in metric_history(scalars, 'time')][1:]
    with open(osp.join(run_dir, 'test_metrics.json')) as f:
        test = json.load(f)['accuracy/top1']
    reg = REGIMES[spec['regime']]
    pieces = run['pieces']
    record = dict(
        name=name, spec=spec, config_hash=config_hash(spec, work_dir),
        num_train=reg['num_train'],
        epochs=round(epochs(spec['iters'], reg['num_train']), 2),
        val_top1=val[-1][1], best_val_top1=max(v for _, v in val),
        val_curve=val, test_top1=float(test),
        s_per_iter=float(np.mean(times)) if times else None,
        wall_s=run['wall_s'], threads=1, jobs=jobs,
        load_start=pieces[0]['load_start'], load_end=pieces[-1]['load_end'],
        cpus=os.cpu_count(), finished=time.strftime('%Y-%m-%d %H:%M'))
    if len(pieces) > 1:
        record['pieces'] = pieces
    write_record(records_dir, spec['regime'], record)
    echo(f'{name}: val {record["val_top1"]:.2f} test {test:.2f} '
         f'({run["wall_s"]:.0f} s)')
    return record


# ------------------------------------------------------------- records ----
def split_stale(records: List[dict], work_dir: str
                ) -> Tuple[Dict[str, dict], List[str]]:
    """Valid records by name, and the names of the stale ones."""
    return study.split_stale(records, lambda sp: config_hash(sp, work_dir))


# ------------------------------------------------------------ step cost ---
STEP_COST_DIR = 'step_cost'


def step_cost_hash(drop: float, work_dir: str) -> str:
    """Hash of the two arms' configs at drop rate ``drop``."""
    text = ''.join(f'# {arm}\n' + study.resolved_hash(
        f'_base_ = [{osp.join(REPO, cfg)!r}]\n'
        f'model = dict(backbone=dict(drop_path_rate={drop!r}))\n',
        osp.join(work_dir, '_hash', f'step_cost_{arm}_dp{drop:g}.py'))
        for arm, cfg in (('baseline', BASE_CFG), ('cosub', COSUB_CFG)))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def load_step_costs(records_dir: str, work_dir: str) -> Dict[float, dict]:
    """Valid step-cost records by drop rate (stale ones left out)."""
    valid, _ = study.split_stale(
        study.load_records(records_dir, STEP_COST_DIR),
        lambda spec: step_cost_hash(spec['drop'], work_dir))
    return {r['spec']['drop']: r for r in valid.values()}


def measure_step_cost(drop: float, steps: int = 30,
                      warmup: int = 3) -> dict:
    """A cosub iteration's cost over a baseline one, measured side by side.

    Both arms' models (the study configs at drop rate ``drop``, uniform)
    train on the same real batches in one process with one thread,
    alternating step by step, so a load on the machine weighs on both alike
    (the wall time of runs trained at different times does not). The data
    pipeline's time per batch, the same for both arms, is added to both.

    Returns:
        dict: ``ratio`` = (data + cosub step) / (data + baseline step) of
        the medians, and the medians themselves in seconds.
    """
    import torch
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from mmpretrain.registry import MODELS

    from cosub_mm.models.drop_path import set_drop_path_rates
    torch.set_num_threads(1)
    init_default_scope('mmpretrain')
    arms = {}
    for arm, path in (('baseline', BASE_CFG), ('cosub', COSUB_CFG)):
        cfg = Config.fromfile(osp.join(REPO, path))
        model_cfg = cfg.model.copy()
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
        torch.manual_seed(0)
        model = MODELS.build(model_cfg)
        model.init_weights()
        set_drop_path_rates(model.backbone, drop, 'uniform')
        model.train()
        arms[arm] = (model, build_optim_wrapper(model, cfg.optim_wrapper))
    loader_cfg = cfg.train_dataloader.copy()
    loader_cfg.dataset.data_root = osp.join(REPO, DATA_ROOT)
    batches = iter(Runner.build_dataloader(loader_cfg, seed=0))
    times = {'data': [], 'baseline': [], 'cosub': []}
    for i in range(warmup + steps):
        start = time.perf_counter()
        batch = next(batches)
        times['data'].append(time.perf_counter() - start)
        order = ('baseline', 'cosub') if i % 2 else ('cosub', 'baseline')
        for arm in order:
            model, optim = arms[arm]
            start = time.perf_counter()
            model.train_step(batch, optim)
            times[arm].append(time.perf_counter() - start)
    med = {k: float(np.median(v[warmup:])) for k, v in times.items()}
    return dict(ratio=(med['data'] + med['cosub']) /
                (med['data'] + med['baseline']), data_s=med['data'],
                baseline_s=med['baseline'], cosub_s=med['cosub'],
                steps=steps)


def record_step_cost(drop: float, records_dir: str, work_dir: str,
                     steps: int = 30) -> dict:
    """Measure the step cost at ``drop`` and write its record."""
    load_start = machine_load()
    cost = measure_step_cost(drop, steps)
    record = dict(name=f'dp{drop:g}', spec=dict(drop=drop),
                  config_hash=step_cost_hash(drop, work_dir), **cost,
                  threads=1, load_start=load_start, load_end=machine_load(),
                  cpus=os.cpu_count(),
                  finished=time.strftime('%Y-%m-%d %H:%M'))
    write_record(records_dir, STEP_COST_DIR, record)
    return record


class Plan:
    """The runs of a regime, derived from the records that exist.

    ``runnable`` lists, in priority order, the runs whose inputs are
    recorded and that are not recorded themselves; the chosen recipe,
    length and equal-compute length follow from the records.
    """

    def __init__(self, regime: str, records: Dict[str, dict],
                 step_costs: Optional[Dict[float, dict]] = None) -> None:
        self.regime = regime
        self.reg = REGIMES[regime]
        self.records = records
        self.step_costs = step_costs or {}
        #: the drop rate whose step cost the equal-compute stage waits for
        self.needs_step_cost: Optional[float] = None
        self.runnable: List[dict] = []
        self.best: Optional[tuple] = None
        self.length: Optional[int] = None
        self.converged: Optional[bool] = None
        self.compute_ratio: Optional[float] = None
        self.equal_iters: Optional[int] = None
        self._build()

    def rec(self, spec: dict) -> Optional[dict]:
        return self.records.get(run_name(spec))

    def _want(self, specs: Sequence[dict]) -> bool:
        """Queue the missing specs; True when all are recorded."""
        done = True
        for spec in specs:
            if self.rec(spec) is None:
                done = False
                if spec not in self.runnable:
                    self.runnable.append(spec)
        return done

    def base(self, recipe: tuple, iters: int, seed: int) -> dict:
        lr, wd, drop = recipe
        return make_spec(self.regime, 'baseline', lr, wd, drop, iters, seed)

    def cosub(self, recipe: tuple, iters: int, seed: int, **knob) -> dict:
        lr, wd, drop = recipe
        if knob.get('drop') == 'other':
            knob['drop'] = 0.2 if drop < 0.2 else 0.1
        return make_spec(self.regime, 'cosub', lr, wd,
                         knob.get('drop', drop),
                         iters * knob.get('length', 1), seed,
                         lam=knob.get('lam', 0.5), loss=knob.get('loss', 'ce'))

    def _build(self) -> None:
        reg, t = self.reg, self.reg['iters']
        sweep = [self.base(g, t, 0) for g in reg['grid']]
        if not self._want(sweep):
            # keeps a second worker busy: likely the headline's first run
            self._want([self.cosub(reg['grid'][0], t, 0)])
            return
        self.best = max(reg['grid'],
                        key=lambda g: self.rec(self.base(g, t, 0))['val_top1'])
        length = t
        while True:
            short, long = (self.base(self.best, length, 0),
                           self.base(self.best, 2 * length, 0))
            if not self._want([short, long]):
                self._want([self.cosub(self.best, length, 0)])
                return
            gain = self.rec(long)['val_top1'] - self.rec(short)['val_top1']
            if gain < CONVERGED_GAIN or length >= t * 2**reg.get(
                    'max_doublings', 2):
                self.converged = gain < CONVERGED_GAIN
                break
            length *= 2
        self.length = length
        seeds = reg['seeds']
        pair0 = [self.cosub(self.best, length, seeds[0]),
                 self.base(self.best, length, seeds[0])]
        if not self._want(pair0):
            return
        cost = self.step_costs.get(self.best[2])
        if cost is None:
            self.needs_step_cost = self.best[2]
        else:
            self.compute_ratio = cost['ratio']
            step = max(1, length // 20)
            self.equal_iters = int(round(
                length * self.compute_ratio / step)) * step
        equal = ((lambda seed: [self.base(self.best, self.equal_iters, seed)])
                 if self.equal_iters else (lambda seed: []))
        first, rest = seeds[:3], seeds[3:]
        self._want([s for seed in first for s in (
            self.cosub(self.best, length, seed),
            self.base(self.best, length, seed))])
        self._want([s for seed in first for s in equal(seed)])
        self._want([self.cosub(self.best, length, seeds[0], **dict(k))
                    for k in reg['knobs']])
        self._want([s for seed in rest for s in [
            self.cosub(self.best, length, seed),
            self.base(self.best, length, seed)] + equal(seed)])


# -------------------------------------------------------------- summary ---
def regime_summary(plan: Plan) -> Tuple[List[str], Optional[dict]]:
    """Markdown lines and the headline numbers of one regime."""
    reg, t = plan.reg, plan.reg['iters']
    lines = [f"### {plan.regime}: {reg['num_train']:,} training images", '']
    sweep = [(g, plan.rec(plan.base(g, t, 0))) for g in reg['grid']]
    lines += ['Baseline sweep (seed 0, '
              f'{t} iterations = {epochs(t, reg["num_train"]):.0f} epochs; '
              'chosen on validation):', '',
              '| lr | weight decay | drop rate | val top-1 | test top-1 |',
              '|---|---|---|---|---|']
    for (lr, wd, drop), rec in sweep:
        mark = ' **(chosen)**' if plan.best == (lr, wd, drop) else ''
        if rec:
            lines.append(f'| {lr:g}{mark} | {wd:g} | {drop:g} | '
                         f'{rec["val_top1"]:.2f} | {rec["test_top1"]:.2f} |')
        else:
            lines.append(f'| {lr:g} | {wd:g} | {drop:g} | not run | |')
    lines.append('')
    if plan.best is None:
        return lines + ['The sweep is not finished.', ''], None
    checks = []
    length = t
    while True:
        a, b = (plan.rec(plan.base(plan.best, n, 0))
                for n in (length, 2 * length))
        if not (a and b):
            break
        checks.append(f'{length} → {2 * length} iterations: val '
                      f'{a["val_top1"]:.2f} → {b["val_top1"]:.2f} '
                      f'({b["val_top1"] - a["val_top1"]:+.2f}), test '
                      f'{a["test_top1"]:.2f} → {b["test_top1"]:.2f}')
        if plan.length is not None and length >= plan.length:
            break
        length *= 2
    lines += ['Convergence of the chosen baseline (doubling its length must '
              f'gain < {CONVERGED_GAIN} validation points): ' +
              ('; '.join(checks) if checks else 'not run yet') + '.' +
              (' **Not converged at the longest length tried.**'
               if plan.converged is False else ''), '']
    if plan.length is None:
        lines += ['**Not yet decided:** the run length (the convergence '
                  'check at twice the length is still to run), hence no '
                  'paired result.', '']
        return lines + all_runs(plan), None
    seeds = reg['seeds']
    cos = [plan.rec(plan.cosub(plan.best, plan.length, s)) for s in seeds]
    bas = [plan.rec(plan.base(plan.best, plan.length, s)) for s in seeds]
    eq = ([plan.rec(plan.base(plan.best, plan.equal_iters, s)) for s in seeds]
          if plan.equal_iters else [None] * len(seeds))
    rows = [('cosub', plan.length, cos), ('baseline', plan.length, bas),
            ('baseline, equal compute', plan.equal_iters, eq)]
    lines += [f'Headline (same recipe, {plan.length} iterations = '
              f'{epochs(plan.length, reg["num_train"]):.0f} epochs; test top-1 '
              'on the test images, once per run):', '',
              '| arm | iterations | seeds | test top-1 (%) | per seed |',
              '|---|---|---|---|---|']
    for label, iters, recs in rows:
        got = [r['test_top1'] for r in recs if r]
        per = ', '.join('-' if r is None else f'{r["test_top1"]:.2f}'
                        for r in recs)
        lines.append(f'| {label} | {iters or "-"} | {len(got)} | '
                     f'{mean_std(got) if got else "-"} | {per} |')
    lines.append('')
    headline = dict(regime=plan.regime, num_train=reg['num_train'],
                    iters=plan.length, equal_iters=plan.equal_iters,
                    compute_ratio=plan.compute_ratio)
    for key, other in (('equal_iterations', bas), ('equal_compute', eq)):
        pairs = [(c['test_top1'], o['test_top1'])
                 for c, o in zip(cos, other) if c and o]
        if pairs:
            iv = paired_interval(*zip(*pairs))
            headline[key] = iv
            lines.append(f'- cosub − baseline, {key.replace("_", " ")} '
                         f'(paired by seed, mean [95 % CI]): '
                         f'{interval_text(iv)} points.')
    got_c = [r['test_top1'] for r in cos if r]
    got_b = [r['test_top1'] for r in bas if r]
    if got_c and got_b:
        headline.update(cosub=float(np.mean(got_c)),
                        baseline=float(np.mean(got_b)),
                        seeds=min(len(got_c), len(got_b)))
    if plan.compute_ratio:
        cost = plan.step_costs[plan.best[2]]
        lines.append(
            f'- A cosub iteration costs {plan.compute_ratio:.2f}x a baseline '
            'one (measured side by side in one process, '
            f"`{STEP_COST_DIR}/{cost['name']}.json`: data "
            f"{cost['data_s']:.3f} s, baseline step {cost['baseline_s']:.3f}"
            f" s, cosub step {cost['cosub_s']:.3f} s), so equal compute "
            f'gives the baseline {plan.equal_iters} iterations.')
    knobs = [(k, plan.rec(plan.cosub(plan.best, plan.length, seeds[0],
                                     **dict(k)))) for k in reg['knobs']]
    if knobs:
        ref = cos[0]
        lines += ['', 'Cosub knobs (seed 0, one change each, validation):',
                  '', '| change | val top-1 | test top-1 |', '|---|---|---|',
                  '| none (λ 0.5, CE, the baseline\'s drop rate) | ' +
                  (f'{ref["val_top1"]:.2f} | {ref["test_top1"]:.2f} |'
                   if ref else 'not run | |')]
        for knob, rec in knobs:
            label = ', '.join(f'{k} {v}' for k, v in knob.items())
            if rec:
                label = label.replace('drop other',
                                      f'drop {rec["spec"]["drop"]:g}')
            if 'length' in knob:
                label = (f"{knob['length']}x the length "
                         f"({knob['length'] * plan.length} iterations)")
            lines.append(f'| {label} | ' + (
                f'{rec["val_top1"]:.2f} | {rec["test_top1"]:.2f} |'
                if rec else 'not run | |'))
        lines += by_length(plan)
    lines.append('')
    return lines + all_runs(plan), headline


def by_length(plan: Plan) -> List[str]:
    """Cosub − baseline of seed 0 at every length both arms were run."""
    gains = []
    for iters in sorted({r['spec']['iters'] for r in plan.records.values()}):
        c, b = (plan.rec(plan.cosub(plan.best, iters, 0)),
                plan.rec(plan.base(plan.best, iters, 0)))
        if c and b:
            gains.append(
                f"{iters} ({epochs(iters, plan.reg['num_train']):.0f} "
                f"epochs): {c['val_top1'] - b['val_top1']:+.2f} / "
                f"{c['test_top1'] - b['test_top1']:+.2f}")
    if len(gains) < 2:
        return []
    return ['', 'Cosub − baseline by schedule length (seed 0, same recipe, '
            'validation / test points): ' + '; '.join(gains) + '.']


def all_runs(plan: Plan) -> List[str]:
    """Every recorded run of the regime, whatever stage it served."""
    lines = ['All runs of this regime (seed-0 runs of a stage not yet '
             'reached included):', '',
             '| arm | lr | wd | drop | λ, loss | iterations | seed | val '
             'top-1 | test top-1 | s/iter |', '|---|---|---|---|---|---|---|'
             '---|---|---|']
    for name in sorted(plan.records):
        r = plan.records[name]
        sp = r['spec']
        knobs = (f"{sp['lam']:g}, {sp['loss']}" if sp['arm'] == 'cosub'
                 else '-')
        spi = '-' if r['s_per_iter'] is None else f"{r['s_per_iter']:.2f}"
        lines.append(f"| {sp['arm']} | {sp['lr']:g} | {sp['wd']:g} | "
                     f"{sp['drop']:g} | {knobs} | {sp['iters']} | "
                     f"{sp['seed']} | {r['val_top1']:.2f} | "
                     f"{r['test_top1']:.2f} | {spi} |")
    return lines + ['']


def conclusion(headlines: List[dict]) -> List[str]:
    """What the records say, whatever the sign."""
    out = []
    for h in headlines:
        iv = h.get('equal_iterations')
        if not iv:
            continue
        verdict = study.verdict(iv)
        line = (f"- {h['num_train']:,} images, equal iterations: "
                f"{interval_text(iv)} points over {iv['n']} seed pairs: "
                f'{verdict}.')
        ivc = h.get('equal_compute')
        if ivc:
            line += (f" Equal compute: {interval_text(ivc)} over "
                     f"{ivc['n']} pairs.")
        out.append(line)
    return out or ['- No regime has a paired cosub/baseline result yet: '
                   'the study is still at its baseline stages (see below).']


def plot(plans: List[Plan], png: str) -> None:
    """Headline test top-1 by training-set size, and validation curves."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for arm, colour in (('cosub', 'C0'), ('baseline', 'C1')):
        xs, ms, ss = [], [], []
        for p in plans:
            if p.length is None:
                continue
            make = p.cosub if arm == 'cosub' else p.base
            got = [r['test_top1'] for r in (
                p.rec(make(p.best, p.length, s)) for s in p.reg['seeds']) if r]
            if got:
                xs.append(p.reg['num_train'])
                ms.append(np.mean(got))
                ss.append(np.std(got, ddof=1) if len(got) > 1 else 0.0)
        if xs:
            ax1.errorbar(xs, ms, yerr=ss, marker='o', capsize=3,
                         color=colour, label=arm)
    ax1.set_xscale('log')
    ax1.set_xlabel('training images')
    ax1.set_ylabel('test top-1 (%), mean ± std over seeds')
    ax1.set_title('equal iterations')
    for p in plans:
        if p.length is None:
            continue
        for arm, colour in (('cosub', 'C0'), ('baseline', 'C1')):
            make = p.cosub if arm == 'cosub' else p.base
            for s in p.reg['seeds']:
                r = p.rec(make(p.best, p.length, s))
                if r:
                    ax2.plot(*zip(*val_curve(r)), color=colour, alpha=0.6,
                             label=f'{arm} ({p.regime})' if s == 0 else None)
    ax2.set_xlabel('iteration')
    ax2.set_ylabel('validation top-1 (%)')
    ax2.set_title('validation accuracy over training')
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(png)), exist_ok=True)
    fig.savefig(png)
    plt.close(fig)


def machines(plans: List[Plan]) -> str:
    """How the recorded runs shared their machines, from the records."""
    kinds = sorted({(r.get('threads'), r.get('jobs'), r.get('cpus'))
                    for p in plans for r in p.records.values()},
                   key=repr)
    return '; '.join(f'{t} thread(s) per run, {j} run(s) at a time on '
                     f'{c} CPUs' for t, j, c in kinds) or 'no runs'


def summarise(regimes: Sequence[str], records_dir: str, work_dir: str,
              out_md: str, title_suffix: str = '') -> dict:
    """Write the markdown, PNG and summary JSON from the records."""
    plans, body, headlines, stale_all = [], [], [], []
    wall = 0.0
    count = 0
    for regime in regimes:
        records = load_records(records_dir, regime)
        valid, stale = split_stale(records, work_dir)
        stale_all += [f'{regime}/{n}' for n in stale]
        wall += sum(r['wall_s'] for r in valid.values())
        count += len(valid)
        if not valid:
            continue
        plan = Plan(regime, valid, load_step_costs(records_dir, work_dir))
        plans.append(plan)
        lines, headline = regime_summary(plan)
        body += lines
        if headline:
            headlines.append(headline)
    png = osp.splitext(out_md)[0] + '.png'
    plot(plans, png)
    loads = [r['load_end'][0] for p in plans for r in p.records.values()]
    pr = protocol()
    md = [
        '# Cosub vs baseline on Fashion-MNIST' + title_suffix, '',
        'Generated by `tools/analysis_tools/replicate_fashion_mnist.py` from '
        'the run records in `docs/results/runs/`; do not edit by hand.', '',
        f'Protocol (`{BASE_CFG}` and its cosub twin): a ViT (patch '
        f"{pr['patch']}, width {pr['embed_dims']}, {pr['num_layers']} "
        f"blocks, {pr['num_heads']} heads, MLP {pr['feedforward_channels']}, "
        f"class token), batch {pr['batch']}, AdamW, 10 % linear warmup + "
        'cosine, '
        'reflect-pad 2 + random crop + flip, uniform stochastic depth, '
        "softmax cross-entropy (cosub: `loss_type='ce'`, λ 0.5, k = 2). "
        'Every choice (both arms) is made on a validation split held out '
        'of the training images (the last 5,000); each run reports the '
        'test set once, at its end. Paired runs share the seed, hence the '
        'initialisation and data order.', '',
        '**Conclusion so far**', '',
    ] + conclusion(headlines) + [
        '', f'![cosub vs baseline]({osp.basename(png)})', '',
    ] + body + [
        f'Records: {count} runs, {wall / 3600:.1f} h of training wall time '
        f'({machines(plans)}; 1-min load at the runs\' ends '
        f'{min(loads, default=0):.1f}–{max(loads, default=0):.1f}).',
    ]
    if stale_all:
        md += ['', f'**Stale records left out** (their config no longer '
               f'matches the code): {", ".join(stale_all)}.']
    old = archived(records_dir)
    if old:
        md += ['', 'Records of earlier protocols, kept and left out: ' +
               '; '.join(f'`{name}/` ({n} runs)' for name, n in old) +
               ' (each folder says what it held).']
    text = '\n'.join(md) + '\n'
    os.makedirs(osp.dirname(osp.abspath(out_md)), exist_ok=True)
    with open(out_md, 'w') as f:
        f.write(text)
    summary = dict(source=osp.relpath(out_md, REPO) if out_md.startswith(
        REPO) else out_md, headlines=headlines, stale=stale_all, runs=count)
    with open(osp.splitext(out_md)[0] + '_summary.json', 'w') as f:
        json.dump(summary, f, indent=1)
    return summary


# ----------------------------------------------------------------- main ---
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--regime', nargs='+', default=None,
                        choices=sorted(REGIMES),
                        help='regimes to train (default: none with '
                        '--summarise-only, n1000 and n5000 otherwise)')
    parser.add_argument('--quick', action='store_true',
                        help='the quick regime, records under the work dir')
    parser.add_argument('--jobs', type=int, default=2,
                        help='training processes at a time (1 thread each)')
    parser.add_argument('--max-hours', type=float, default=2.0,
                        help='start no run after this; a run still going '
                        'then stops at its next checkpoint, continued by the '
                        'next invocation')
    parser.add_argument('--max-runs', type=int, default=None)
    parser.add_argument('--work-dir',
                        default='work_dirs/replicate_fashion_mnist')
    parser.add_argument('--records-dir', default=None,
                        help='default docs/results/runs (quick: under '
                        'the work dir)')
    parser.add_argument('--out-md', default=None)
    parser.add_argument('--step-cost-steps', type=int, default=30,
                        help='side-by-side steps per arm of the step-cost '
                        'measurement (equal compute)')
    parser.add_argument('--summarise-only', action='store_true',
                        help='train nothing: regenerate the results from '
                        'the records')
    args = parser.parse_args(argv)
    absolute = lambda p: p if osp.isabs(p) else osp.join(REPO, p)  # noqa
    args.work_dir = absolute(args.work_dir)
    if args.quick:
        args.regime = ['quick']
        args.records_dir = args.records_dir or osp.join(args.work_dir,
                                                        'records')
        args.out_md = args.out_md or osp.join(args.work_dir, 'RESULTS.md')
    args.records_dir = absolute(args.records_dir or 'docs/results/runs')
    args.out_md = absolute(args.out_md or 'docs/results/fashion_mnist.md')
    return args


def train(regimes: Sequence[str], args: argparse.Namespace) -> None:
    """Run what the records still lack, ``args.jobs`` at a time."""
    check_fashion_mnist(osp.join(REPO, DATA_ROOT))

    def log(message: str) -> None:
        print(message, flush=True)

    def todo() -> List[Tuple[str, dict]]:
        specs = []
        for regime in regimes:
            valid, _ = split_stale(load_records(args.records_dir, regime),
                                   args.work_dir)
            costs = load_step_costs(args.records_dir, args.work_dir)
            plan = Plan(regime, valid, costs)
            if plan.needs_step_cost is not None:
                # a minute of side-by-side steps, here in the scheduler
                rec = record_step_cost(plan.needs_step_cost,
                                       args.records_dir, args.work_dir,
                                       args.step_cost_steps)
                log(f"step cost at drop {rec['spec']['drop']:g}: cosub / "
                    f"baseline = {rec['ratio']:.3f}")
                costs = load_step_costs(args.records_dir, args.work_dir)
                plan = Plan(regime, valid, costs)
            specs += plan.runnable
        return [(f"{s['regime']}/{run_name(s)}", s) for s in specs]

    # a run still going when the budget ends stops at its next
    # checkpoint; the next invocation continues it
    end = time.time() + 3600 * args.max_hours
    study.run_pool(
        todo, lambda spec: execute(
            spec, args.work_dir, args.records_dir, args.jobs, echo=log,
            hours=max(0.0, end - time.time()) / 3600),
        args.jobs, args.max_hours, args.max_runs, log=log)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    if not args.summarise_only:
        train(args.regime or ['n1000', 'n5000'], args)
    regimes = args.regime if args.quick else [
        r for r in REGIMES if r != 'quick']
    summary = summarise(regimes, args.records_dir, args.work_dir,
                        args.out_md,
                        ' (quick smoke run)' if args.quick else '')
    with open(args.out_md) as f:
        print(f.read())
    print(f'markdown: {args.out_md}', flush=True)
    return summary


if __name__ == '__main__':
    main()

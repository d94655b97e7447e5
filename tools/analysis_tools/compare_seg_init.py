"""Segmentation from cosub-, baseline- and randomly initialised backbones.

UperNet (``configs/study/upernet_vit-6l-64d-p7_fashion-scenes.py``, the
demo's recipe on the study's ViT) is finetuned on the fashion scenes
(``tools/dataset_converters/make_fashion_scenes.py``: 400 training and 100
validation scenes of 64 px, seed 0) through ``tools/train.py``, in four
arms per seed:

- ``cosub-init``: from the classification study's cosub classifier of that
  seed (``replicate_fashion_mnist.py``, the headline runs of ``--regime``:
  the chosen recipe at the chosen length);
- ``baseline-init``: from the baseline classifier of that seed, same
  recipe, same iterations;
- ``random-init``: no pretraining;
- ``cosub-init + cosub-ft``: the cosub backbone finetuned with
  ``cosub_mm.CosubEncoderDecoder`` (cosub during finetuning).

First the finetuning length: the baseline-init arm of the regime's first
seed at twice the length must gain less than 0.5 validation mIoU, else the
length doubles (unless the check seeds already recorded gain less than
that on average); a stop is decided on the mean gain over the regime's
``check_seeds`` first seeds. The longest length allowed is taken whatever
its own check says; its arms run beside that check, which is reported.
Each comparison (a pair of arms) is made at the decided length once its
two arms share three seeds there; until then the summary keeps it at the
longest shorter length where they do, and shows its runs at the decided
length so far, without a verdict. Arms run longer than the decided length
(the check's runs, and any arm run beside them to see whether a
comparison holds) are tabled apart, with numbers and no verdict.
Every run writes one JSON record under ``docs/results/runs/seg_<regime>/``
(the hash covers the resolved finetuning config and the classification
run's own hash, so a retrained backbone stales its finetunings);
``docs/results/fashion_scenes.md`` and its PNG are generated from the
records only, and copied into ``configs/upernet/README.md`` by
``tools/misc/update_readme.py``. The length is the only choice made on
the validation scenes; the recipe is the demo's for every arm.

The classifiers' checkpoints are taken from the classification study's
work dir (``--cls-work-dir``); one that is missing there (another machine)
is retrained under this study's work dir from its record's spec, and the
seg record notes the retrained run's test top-1 beside the recorded one.

A run still going when ``--max-hours`` ends stops at its next checkpoint
(of 32 per run) and the next invocation continues it, exactly: the pieces
of a run give the numbers of a run that did not stop.

Usage:
    python tools/analysis_tools/compare_seg_init.py --max-hours 2
    python tools/analysis_tools/compare_seg_init.py --summarise-only
    python tools/analysis_tools/compare_seg_init.py --quick   # minutes
"""
import argparse
import hashlib
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from cosub_mm import study
from cosub_mm.runs import (REPO, check_fashion_mnist, last_checkpoint,
                           metric_history, tool_env, train_in_pieces)

sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
import replicate_fashion_mnist as cls_study  # noqa: E402

SEG_CFG = 'configs/study/upernet_vit-6l-64d-p7_fashion-scenes.py'
SCENES_TOOL = 'tools/dataset_converters/make_fashion_scenes.py'
SCENES = dict(seed=0, num_train=400, num_val=100, size=64)
FLAT_GAIN = 0.5  # validation mIoU gained by doubling the length
HEADLINE_SEEDS = 3  # paired seeds a comparison needs at a length
#: (backbone init, finetuning) of each arm, in the order of the tables.
ARMS = (('cosub', 'plain'), ('baseline', 'plain'), ('random', 'plain'),
        ('cosub', 'cosub'))

REGIMES: Dict[str, dict] = {
    # cls: the classification study's regime whose headline runs are used
    'n1000': dict(cls='n1000', iters=600, seeds=(0, 1, 2),
                  max_doublings=2),
    'n5000': dict(cls='n5000', iters=600, seeds=(4, 0, 1, 2),
                  max_doublings=5, check_seeds=2),
    'quick': dict(cls='quick', iters=10, seeds=(0, 1), max_doublings=0,
                  scenes=dict(seed=0, num_train=16, num_val=8, size=64)),
}


def arm_label(init: str, finetune: str) -> str:
    """``cosub-init``, ``cosub-init + cosub-ft``, ..."""
    return f'{init}-init' + (' + cosub-ft' if finetune == 'cosub' else '')


def make_spec(regime: str, init: str, finetune: str, iters: int,
              seed: int) -> dict:
    """A finetuning run's identity."""
    return dict(regime=f'seg_{regime}', cls_regime=REGIMES[regime]['cls'],
                init=init, finetune=finetune, iters=int(iters), seed=seed)


def run_name(spec: dict) -> str:
    """A file-safe name of a run spec."""
    return (f"{spec['init']}-init_{spec['finetune']}-ft_{spec['iters']}i_"
            f"s{spec['seed']}")


def config_text(spec: dict, checkpoint: Optional[str],
                scenes_root: str) -> str:
    """The finetuning config: the study's UperNet and the spec's overrides.

    ``checkpoint`` is the classifier's checkpoint (``None`` for random
    init); the hash is taken with placeholders for both paths.
    """
    init = ('None' if spec['init'] == 'random' else
            f"dict(type='Pretrained', checkpoint={checkpoint!r}, "
            "prefix='backbone.')")
    model = f'dict(backbone=dict(init_cfg={init})'
    if spec['finetune'] == 'cosub':
        model += ", type='cosub_mm.CosubEncoderDecoder'"
    lines = [f'_base_ = [{osp.join(REPO, SEG_CFG)!r}]',
             f'model = {model})',
             f"train_cfg = dict(val_interval={max(1, spec['iters'] // 6)})",
             f"randomness = dict(seed={spec['seed']})"]
    for split in ('train', 'val', 'test'):
        lines.append(f'{split}_dataloader = dict(dataset=dict('
                     f'data_root={scenes_root!r}))')
    return '\n'.join(lines) + '\n'


def scenes_of(regime: str) -> dict:
    return REGIMES[regime].get('scenes', SCENES)


class Study:
    """The segmentation study of one regime: paths, hashes and the plan."""

    def __init__(self, regime: str, work_dir: str, records_dir: str,
                 cls_work_dir: str, cls_records_dir: str) -> None:
        self.regime = regime
        self.reg = REGIMES[regime]
        self.work_dir = work_dir
        self.records_dir = records_dir
        self.cls_work_dir = cls_work_dir
        self.cls_records_dir = cls_records_dir
        self.scenes_root = osp.join(work_dir, 'fashion_scenes_' + '_'.join(
            f'{k}{v}' for k, v in sorted(scenes_of(regime).items())))
        self._hashes: Dict[str, str] = {}
        self.refresh()

    def refresh(self) -> None:
        """Re-read the classification study's records."""
        valid, _ = cls_study.split_stale(
            cls_study.load_records(self.cls_records_dir, self.reg['cls']),
            self.cls_work_dir)
        self.cls_plan = cls_study.Plan(self.reg['cls'], valid)

    # -- the classifiers --------------------------------------------------
    def cls_spec(self, init: str, seed: int) -> Optional[dict]:
        """The classification headline run a backbone comes from."""
        plan = self.cls_plan
        if init == 'random':
            return None
        if plan.length is None:
            raise SystemExit(
                f"compare_seg_init: the classification regime "
                f"{self.reg['cls']} has no headline length yet (its "
                'convergence check is unfinished); run '
                'tools/analysis_tools/replicate_fashion_mnist.py first')
        make = plan.cosub if init == 'cosub' else plan.base
        return make(plan.best, plan.length, seed)

    def cls_hash(self, spec: dict) -> Optional[str]:
        cspec = self.cls_spec(spec['init'], spec['seed'])
        return None if cspec is None else cls_study.config_hash(
            cspec, self.cls_work_dir)

    def config_hash(self, spec: dict) -> str:
        """Hash of the finetuning config and of its backbone's run."""
        from cosub_mm.utils import scale_schedule
        key = json.dumps([spec, self.cls_spec(spec['init'], spec['seed'])],
                         sort_keys=True)
        if key not in self._hashes:
            text = config_text(spec, '<classifier checkpoint>', '<scenes>')
            seg = study.resolved_hash(
                text, osp.join(self.work_dir, '_hash',
                               run_name(spec) + '.py'),
                adjust=lambda cfg: scale_schedule(cfg, spec['iters']))
            blob = json.dumps([seg, self.cls_hash(spec),
                               scenes_of(self.regime)], sort_keys=True)
            self._hashes[key] = hashlib.sha1(blob.encode()).hexdigest()[:16]
        return self._hashes[key]

    def checkpoint(self, spec: dict) -> Tuple[Optional[str], dict]:
        """The backbone's checkpoint, retraining it when it is missing."""
        cspec = self.cls_spec(spec['init'], spec['seed'])
        if cspec is None:
            return None, {}
        name = cls_study.run_name(cspec)
        record = self.cls_plan.rec(cspec)
        if record is None:
            raise SystemExit(f'compare_seg_init: the classification run '
                             f"{self.reg['cls']}/{name} is not recorded "
                             'yet; run replicate_fashion_mnist.py first')
        note = dict(backbone_run=f"{self.reg['cls']}/{name}",
                    backbone_test_top1=record['test_top1'])
        run_dir = osp.join(self.cls_work_dir, cspec['regime'], name)
        try:
            return last_checkpoint(run_dir), note
        except FileNotFoundError:
            pass
        rerun = osp.join(self.work_dir, 'classifiers')
        rerun_dir = osp.join(rerun, cspec['regime'], name)
        os.makedirs(osp.dirname(rerun_dir), exist_ok=True)
        # the arms of a seed share its classifiers: one job retrains, the
        # others wait for it (threads of the pool or other processes)
        with study.locked(rerun_dir):
            redo = {r['name']: r for r in cls_study.load_records(
                osp.join(rerun, 'records'), cspec['regime'])}.get(name)
            if not (redo and redo['config_hash'] == self.cls_hash(spec)
                    and osp.isfile(osp.join(rerun_dir, 'last_checkpoint'))):
                redo = cls_study.execute(cspec, rerun,
                                         osp.join(rerun, 'records'), jobs=1,
                                         echo=lambda m: None)
            ckpt = last_checkpoint(rerun_dir)
        note['backbone_retrained_test_top1'] = redo['test_top1']
        return ckpt, note

    def make_scenes(self) -> None:
        sc = scenes_of(self.regime)
        subprocess.run(
            [sys.executable, osp.join(REPO, SCENES_TOOL), '--out-dir',
             self.scenes_root, '--seed', str(sc['seed']), '--num-train',
             str(sc['num_train']), '--num-val', str(sc['num_val']),
             '--size', str(sc['size']), '--if-changed'], cwd=REPO,
            env=tool_env(1), check=True, stdout=subprocess.DEVNULL)

    # -- records and the plan ---------------------------------------------
    def records(self) -> Tuple[Dict[str, dict], List[str]]:
        return study.split_stale(
            study.load_records(self.records_dir, f'seg_{self.regime}'),
            self.config_hash)

    def plan(self, records: Dict[str, dict]) -> dict:
        """Runnable specs in priority order, and the decided length."""
        reg, t = self.reg, self.reg['iters']
        out = dict(runnable=[], length=None, flat=None, checks=[])

        def want(specs):
            missing = [s for s in specs if run_name(s) not in records]
            out['runnable'] += [s for s in missing
                                if s not in out['runnable']]
            return not missing

        def gains_of(pairs):
            """``(seed, mIoU, mIoU x2)`` of the check seeds with both runs."""
            return [(s, *(records[run_name(sp)]['mIoU'] for sp in p))
                    for s, p in pairs.items()
                    if all(run_name(sp) in records for sp in p)]

        seeds = reg['seeds'][:reg.get('check_seeds', 1)]
        length = t
        while True:
            pairs = {s: [make_spec(self.regime, 'baseline', 'plain', n, s)
                         for n in (length, 2 * length)] for s in seeds}
            if length >= t * 2**reg['max_doublings']:
                # the longest length allowed is taken whatever its check
                # says: the arms run beside the check, which is reported
                done = want([sp for s in seeds for sp in pairs[s]])
                gains = gains_of(pairs)
                # a check's first entry is the first seed's, whose numbers
                # the summary and the demo quote without a seed label
                if gains and gains[0][0] == seeds[0]:
                    out['checks'].append((length, gains))
                out['flat'] = (mean_gain(gains) < FLAT_GAIN) if done else None
                break
            if not want(pairs[seeds[0]]):
                return out
            gains = gains_of(pairs)
            # the first seed climbs; a stop in view is decided on the mean
            # over the check seeds: one seed's doubling gain is as noisy as
            # the threshold itself
            if gains[0][2] - gains[0][1] < FLAT_GAIN or \
                    mean_gain(gains) < FLAT_GAIN:
                if not want([sp for s in seeds[1:] for sp in pairs[s]]):
                    return out
            out['checks'].append((length, gains))
            if mean_gain(gains) < FLAT_GAIN:
                out['flat'] = True
                break
            length *= 2
        out['length'] = length
        for seed in reg['seeds']:
            want([make_spec(self.regime, i, f, length, seed)
                  for i, f in ARMS])
        return out

    def execute(self, spec: dict,
                hours: Optional[float] = None) -> Optional[dict]:
        """Finetune one arm, or its next piece, and record it at its end.

        With ``hours`` the run stops at its first checkpoint after them
        and the next call continues it exactly (``train_in_pieces``); the
        record sums the pieces' wall times and lists them.

        Returns:
            dict or None: The record, or None while the run is unfinished.
        """
        # the hours count from now: a classifier retrained first uses them
        end = None if hours is None else time.time() + 3600 * hours
        self.make_scenes()
        ckpt, note = self.checkpoint(spec)
        name = run_name(spec)
        run_dir = osp.join(self.work_dir, spec['regime'], name)
        os.makedirs(run_dir, exist_ok=True)
        cfg_path = osp.join(run_dir, 'config.py')
        with open(cfg_path, 'w') as f:
            f.write(config_text(spec, ckpt, self.scenes_root))
        # resume points that change no number, hence outside the hash: the
        # checkpoints keep the RNG states, and validation draws from them as
        # it does without ExactResumeHook (as the recorded runs did)
        args = ['--length', str(spec['iters']), '--cfg-options',
                'default_hooks.exact_resume.type=cosub_mm.ExactResumeHook',
                'default_hooks.exact_resume.isolate_val=False']
        run = train_in_pieces(cfg_path, run_dir, spec['iters'],
                              self.config_hash(spec), args,
                              hours=None if end is None else max(
                                  0.0, end - time.time()) / 3600,
                              threads=1)
        if run is None:
            return None
        scalars = run['scalars']
        curve = metric_history(scalars, 'mIoU')
        if not curve:
            raise RuntimeError(f'compare_seg_init: no mIoU logged under '
                               f'{run_dir}')
        times = [t for _, t in metric_history(scalars, 'time')][1:]
        pieces = run['pieces']
        record = dict(
            name=name, spec=spec, config_hash=self.config_hash(spec),
            mIoU=curve[-1][1], best_mIoU=max(v for _, v in curve),
            aAcc=metric_history(scalars, 'aAcc')[-1][1], curve=curve,
            s_per_iter=float(np.mean(times)) if times else None,
            wall_s=run['wall_s'], threads=1,
            load_start=pieces[0]['load_start'],
            load_end=pieces[-1]['load_end'], cpus=os.cpu_count(),
            finished=time.strftime('%Y-%m-%d %H:%M'), **note)
        if len(pieces) > 1:
            record['pieces'] = pieces
        study.write_record(self.records_dir, spec['regime'], record)
        return record


def mean_gain(gains: Sequence[Tuple[int, float, float]]) -> float:
    """Mean mIoU gained by a doubling: ``[(seed, mIoU, mIoU x2), ...]``."""
    return float(np.mean([b - a for _, a, b in gains]))


# -------------------------------------------------------------- summary ---
def length_check(length: int, gains: Sequence[Tuple[int, float, float]]
                 ) -> str:
    """One doubling of the length check: ``[(seed, mIoU, mIoU x2), ...]``."""
    per = [f'{a:.2f} → {b:.2f} ({b - a:+.2f})' for _, a, b in gains]
    text = f'{length} → {2 * length} iterations: {per[0]}'
    if len(gains) > 1:
        text += ''.join(f', seed {s}: {p}' for (s, _, _), p in
                        zip(gains[1:], per[1:]))
        text += f', mean {mean_gain(gains):+.2f}'
    return text


def backbone_top1(record: dict) -> Optional[float]:
    """Test top-1 of the classifier a run was finetuned from: its retrain's
    where the study retrained it (a retrain on another machine can differ
    from the recorded run)."""
    return record.get('backbone_retrained_test_top1',
                      record.get('backbone_test_top1'))


def backbone_changes(st: 'Study', records: Dict[str, dict],
                     checks: Sequence[Tuple[int, list]]) -> str:
    """A sentence naming the doubling pairs of the length check finetuned
    from different classifiers ('' when there is none)."""
    changed = []
    for n, gains in checks:
        for seed, _, _ in gains:
            a, b = (backbone_top1(records[run_name(make_spec(
                st.regime, 'baseline', 'plain', m, seed))])
                for m in (n, 2 * n))
            if None not in (a, b) and a != b:
                changed.append(f'{n} → {2 * n}, seed {seed} ({a:.2f} → '
                               f'{b:.2f})')
    if not changed:
        return ''
    return (' The backbone changed within ' + '; '.join(changed) +
            ' (test top-1 of the classifier each run was finetuned from: '
            'retrained on different machines, which are not bit-identical), '
            'so those gains include the change of backbone.')


COMPARISONS = (('cosub_vs_baseline_init', ('cosub', 'plain'),
                ('baseline', 'plain')),
               ('cosub_init_vs_random', ('cosub', 'plain'),
                ('random', 'plain')),
               ('baseline_init_vs_random', ('baseline', 'plain'),
                ('random', 'plain')),
               ('cosub_ft_vs_plain_ft', ('cosub', 'cosub'),
                ('cosub', 'plain')))


def arm_records(st: 'Study', records: Dict[str, dict], length: int
                ) -> Dict[Tuple[str, str], List[Optional[dict]]]:
    """Each arm's record per seed of the regime at one length."""
    return {(i, f): [records.get(run_name(make_spec(st.regime, i, f, length,
                                                    s)))
                     for s in st.reg['seeds']] for i, f in ARMS}


def headline_seeds(reg: dict) -> int:
    """Paired seeds a comparison needs at a length before it is made there."""
    return min(HEADLINE_SEEDS, len(reg['seeds']))


def seed_pairs(per_arm: Dict[Tuple[str, str], List[Optional[dict]]],
               a: Tuple[str, str], b: Tuple[str, str]
               ) -> List[Tuple[float, float]]:
    """The mIoU of arms ``a`` and ``b`` on the seeds both have run."""
    return [(x['mIoU'], y['mIoU']) for x, y in zip(per_arm[a], per_arm[b])
            if x and y]


def comparison_lengths(st: 'Study', records: Dict[str, dict],
                       length: int) -> Dict[str, int]:
    """The length each comparison is made at.

    The longest length up to the decided one where its two arms share
    ``headline_seeds`` seeds: each comparison moves to the decided length
    as soon as its own arms are complete there, and while they are not, a
    complete comparison at a shorter length stays in force.
    """
    need = headline_seeds(st.reg)
    out = {}
    for n in sorted({r['spec']['iters'] for r in records.values()
                     if r['spec']['iters'] <= length}, reverse=True):
        per_arm = arm_records(st, records, n)
        for key, a, b in COMPARISONS:
            if key not in out and len(seed_pairs(per_arm, a, b)) >= need:
                out[key] = n
    return out


def arm_table(st: 'Study', records: Dict[str, dict], length: int,
              intro: str, made: Sequence[str],
              pending: Optional[Dict[str, str]] = None
              ) -> Tuple[List[str], dict]:
    """The arms' table and paired differences at one length.

    ``made`` names the comparisons made at this length, with what their
    intervals say; ``pending`` maps the ones still filling in here to the
    sentence ending their line: numbers, no conclusions.
    """
    pending = pending or {}
    per_arm = arm_records(st, records, length)
    lines = [intro, '', '| arm | seeds | mIoU (%) | per seed | aAcc (%) |',
             '|---|---|---|---|---|']
    for (init, ft), recs in per_arm.items():
        got = [r['mIoU'] for r in recs if r]
        per = ', '.join('-' if r is None else f"{r['mIoU']:.2f}"
                        for r in recs)
        lines.append(f'| {arm_label(init, ft)} | {len(got)} | '
                     f'{study.mean_std(got)} | {per} | '
                     f"{np.mean([r['aAcc'] for r in recs if r]):.2f} |"
                     if got else
                     f'| {arm_label(init, ft)} | 0 | - | {per} | - |')
    lines.append('')
    out, shown = {}, False
    for key, a, b in COMPARISONS:
        pairs = seed_pairs(per_arm, a, b)
        if not pairs or (key not in made and key not in pending):
            continue
        iv = study.paired_interval(*zip(*pairs))
        shown = True
        if key in made:
            out[key] = iv
        lines.append(f'- {arm_label(*a)} − {arm_label(*b)} (paired by '
                     f'seed, mean [95 % CI]): {study.interval_text(iv)} mIoU'
                     + (f': {study.verdict(iv, arm_label(*a))}.'
                        if key in made else
                        (f' over {iv["n"]} seed pairs' if iv['n'] > 1
                         else '') + pending[key]))
    return lines + [''] * shown, out


def beyond_tables(st: Study, records: Dict[str, dict], length: int
                  ) -> List[str]:
    """Arms run longer than the decided length, where two of them pair.

    The length check's longer runs, and any arm run beside them, show
    whether a comparison holds when finetuning goes on; with fewer seeds
    than a comparison needs, they get numbers and no verdict.
    """
    lines = []
    for n in sorted({r['spec']['iters'] for r in records.values()
                     if r['spec']['iters'] > length}):
        per_arm = arm_records(st, records, n)
        if not any(seed_pairs(per_arm, a, b) for _, a, b in COMPARISONS):
            continue
        more, _ = arm_table(
            st, records, n, f'Beyond the decided length, {n} iterations '
            "(the length check's runs and arms run beside them; numbers, "
            'no verdict):', (), {k: '.' for k, _, _ in COMPARISONS})
        lines += more
    return lines


def comparison_label(key: str) -> str:
    """``cosub-init − baseline-init`` for a key of ``COMPARISONS``."""
    a, b = next((a, b) for k, a, b in COMPARISONS if k == key)
    return f'{arm_label(*a)} − {arm_label(*b)}'


def regime_summary(st: Study, records: Dict[str, dict]
                   ) -> Tuple[List[str], Optional[dict]]:
    """Markdown lines and the headline numbers of one regime."""
    plan = st.plan(records)
    reg = st.reg
    sc = scenes_of(st.regime)
    lines = [f"### Backbones of the classification regime {reg['cls']}", '',
             f"Fashion scenes: {sc['num_train']} training and "
             f"{sc['num_val']} validation scenes of {sc['size']} px (seed "
             f"{sc['seed']}); batch 8.", '']
    checks = '; '.join(length_check(n, gains) for n, gains in plan['checks'])
    confirm = (f", a stop confirmed on the mean over seeds "
               f"{', '.join(map(str, reg['seeds'][:reg['check_seeds']]))}"
               if reg.get('check_seeds', 1) > 1 else '')
    state = ''
    if plan['flat'] is False:
        state = ' **Still rising at the longest length tried.**'
    elif plan['flat'] is None and plan['length']:
        state = (f" {plan['length']} iterations is the longest length "
                 f"allowed; its check against {2 * plan['length']} is not "
                 'finished, and its arms run beside it.')
    lines += ['Finetuning length (baseline-init, seed '
              f"{reg['seeds'][0]}{confirm}; doubling must gain < {FLAT_GAIN} "
              'validation mIoU): ' + (checks or 'not run yet') + '.' + state +
              backbone_changes(st, records, plan['checks']), '']
    if plan['length'] is None:
        return lines + all_runs(records), None
    length = plan['length']
    at = comparison_lengths(st, records, length)
    need = headline_seeds(reg)
    waiting = {k: (f'; compared at {at[k]} iterations until it has {need} '
                   'seed pairs here.' if k in at else '.')
               for k, _, _ in COMPARISONS if at.get(k) != length}
    done = sum(r is not None for recs in arm_records(
        st, records, length).values() for r in recs)
    found = {}
    for n in sorted(set(at.values()), reverse=True):
        made = [k for k, _, _ in COMPARISONS if at.get(k) == n]
        more, got = arm_table(
            st, records, n, f'Validation mIoU after {n} iterations (mean ± '
            'std over seeds, ddof 1)' + (
                ':' if len(made) == len(COMPARISONS) else
                f"; compared here: {', '.join(map(comparison_label, made))}:"),
            made, waiting if n == length else None)
        lines += more
        found.update(got)
    if length not in at.values():
        more, _ = arm_table(
            st, records, length,
            f'**In progress:** the decided length, {length} iterations '
            f'({done} of {len(ARMS) * len(reg["seeds"])} runs recorded); '
            f'its comparisons are made once their arms have {need} paired '
            'seeds here' + (', replacing the ones above' if at else '') +
            '. So far:', (), dict.fromkeys(waiting, '.'))
        lines += more
    lines += beyond_tables(st, records, length)
    if not at:
        return lines + all_runs(records), None
    # the first comparison made is the study's claim: its length heads
    iters = next(at[k] for k, _, _ in COMPARISONS if k in at)
    headline = dict(regime=st.regime, cls_regime=reg['cls'], iters=iters,
                    # a length shorter than the decided one doubled: rising
                    flat=plan['flat'] if iters == length else False,
                    lengths=at,
                    length_checks=[[n, [list(g) for g in gains]]
                                   for n, gains in plan['checks']],
                    **found)
    if waiting:
        headline['pending'] = dict(iters=length, runs=done,
                                   flat=plan['flat'])
    return lines + all_runs(records), headline


def all_runs(records: Dict[str, dict]) -> List[str]:
    """Every recorded run, whatever stage it served."""
    lines = ['All runs:', '', '| arm | iterations | seed | backbone run | '
             'mIoU | best mIoU | s/iter |', '|---|---|---|---|---|---|---|']
    for r in sorted(records.values(), key=lambda r: (
            r['spec']['init'], r['spec']['finetune'], r['spec']['iters'],
            r['spec']['seed'])):
        sp = r['spec']
        spi = '-' if r['s_per_iter'] is None else f"{r['s_per_iter']:.2f}"
        lines.append(f"| {arm_label(sp['init'], sp['finetune'])} | "
                     f"{sp['iters']} | {sp['seed']} | "
                     f"{r.get('backbone_run', '-')} | {r['mIoU']:.2f} | "
                     f"{r['best_mIoU']:.2f} | {spi} |")
    return lines + ['']


def plot(curves: Dict[str, List[list]], png: str) -> None:
    """Validation mIoU over finetuning, one line per headline run."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    colours = {arm_label(*a): f'C{i}' for i, a in enumerate(ARMS)}
    seen = set()
    for label, curve in curves:
        ax.plot(*zip(*curve), color=colours[label], alpha=0.7,
                label=None if label in seen else label)
        seen.add(label)
    ax.set_xlabel('iteration')
    ax.set_ylabel('validation mIoU (%)')
    ax.set_title('UperNet on fashion scenes, by backbone init')
    ax.grid(alpha=0.3)
    if seen:
        ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(png)), exist_ok=True)
    fig.savefig(png)
    plt.close(fig)


def length_caveat(headline: dict) -> List[str]:
    """The conclusion's warnings, one per comparison length not shown flat.

    A comparison kept at a length shorter than the decided one is before
    the flat point by construction: the length doubled past it.
    """
    pending = headline.get('pending')
    decided = pending['iters'] if pending else headline['iters']
    flat_decided = pending['flat'] if pending else headline['flat']
    checks = dict(headline['length_checks'])
    lengths = headline['lengths']
    lines = []
    for n in sorted(set(lengths.values()), reverse=True):
        flat = flat_decided if n == decided else False
        if flat is True:
            continue
        here = [comparison_label(k) for k, _, _ in COMPARISONS
                if lengths.get(k) == n]
        scope = ('these comparisons' if len(here) == len(lengths)
                 else ', '.join(here))
        gains = checks.get(n)
        if flat is None or not gains:
            lines.append(f'- The finetuning length check at {n} iterations '
                         f'is not finished: {scope} may be made before the '
                         'mIoU curves flatten.')
            continue
        seeds = ', '.join(str(s) for s, _, _ in gains)
        lines.append(
            f'- Finetuning still gains at {n} iterations: doubling it gained '
            f'{mean_gain(gains):+.2f} mIoU (seeds {seeds}), not the < '
            f'{FLAT_GAIN} the length check asks for, so {scope} '
            f'{"is" if len(here) == 1 < len(lengths) else "are"} made before '
            'the mIoU curves flatten; the runs beyond it are tabled below.')
    return lines


def summarise(studies: Sequence[Study], out_md: str,
              title_suffix: str = '') -> dict:
    """Write the markdown, PNG and summary JSON from the records."""
    body, headlines, stale_all, curves = [], [], [], []
    count, wall = 0, 0.0
    for st in studies:
        records, stale = st.records()
        stale_all += [f'seg_{st.regime}/{n}' for n in stale]
        count += len(records)
        wall += sum(r['wall_s'] for r in records.values())
        if not records:
            continue
        lines, headline = regime_summary(st, records)
        body += lines
        if headline:
            headlines.append(headline)
            for r in records.values():
                if r['spec']['iters'] == headline['iters']:
                    curves.append((arm_label(r['spec']['init'],
                                             r['spec']['finetune']),
                                   r['curve']))
    png = osp.splitext(out_md)[0] + '.png'
    plot(sorted(curves), png)
    conclusion = []
    for h in headlines:
        # pretrained vs random gives the scale the cosub gap is read on
        for key, text, what in (
                ('cosub_vs_baseline_init',
                 'cosub-pretrained vs baseline-pretrained', 'cosub'),
                ('cosub_ft_vs_plain_ft',
                 'cosub during finetuning vs plain finetuning', 'cosub'),
                ('cosub_init_vs_random', 'cosub-pretrained vs random init',
                 'pretraining'),
                ('baseline_init_vs_random',
                 'baseline-pretrained vs random init', 'pretraining')):
            if key in h:
                iv = h[key]
                conclusion.append(
                    f"- {text} ({h['cls_regime']} backbones, "
                    f"{h['lengths'][key]} iterations): "
                    f"{study.interval_text(iv)} mIoU over {iv['n']} seed "
                    f"pairs: {study.verdict(iv, what)}.")
        conclusion += length_caveat(h)
    md = ['# UperNet on fashion scenes: cosub, baseline and random init' +
          title_suffix, '',
          'Generated by `tools/analysis_tools/compare_seg_init.py` from the '
          'run records in `docs/results/runs/seg_*/`; do not edit by hand.',
          '',
          f'Protocol: `{SEG_CFG}` (the demo\'s UperNet recipe on the '
          "classification study's ViT) finetuned from the headline "
          'classifiers of the classification study (cosub and baseline of '
          'the same seed, recipe and iterations) or from random weights; '
          'paired by seed. The finetuning length is the only choice made '
          'on the validation scenes.', '', '**Conclusion so far**', ''] + (
              conclusion or ['- No paired result yet: the study is at its '
                             'first stages (see below).']) + [
          '', f'![mIoU curves]({osp.basename(png)})', ''] + body + [
          f'Records: {count} runs, {wall / 3600:.1f} h of training wall '
          'time.']
    if stale_all:
        md += ['', '**Stale records left out** (their config or their '
               f'backbone no longer matches the code): '
               f'{", ".join(stale_all)}.']
    text = '\n'.join(md) + '\n'
    os.makedirs(osp.dirname(osp.abspath(out_md)), exist_ok=True)
    with open(out_md, 'w') as f:
        f.write(text)
    summary = dict(headlines=headlines, stale=stale_all, runs=count)
    with open(osp.splitext(out_md)[0] + '_summary.json', 'w') as f:
        json.dump(summary, f, indent=1)
    return summary


# ----------------------------------------------------------------- main ---
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--regime', nargs='+', default=None,
                        choices=sorted(REGIMES),
                        help='default: n5000 (quick with --quick)')
    parser.add_argument('--quick', action='store_true',
                        help='the quick regimes of both studies, records '
                        'under the work dir')
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument('--max-hours', type=float, default=2.0,
                        help='start no run after this; a run still going '
                        'then stops at its next checkpoint, continued by the '
                        'next invocation')
    parser.add_argument('--max-runs', type=int, default=None)
    parser.add_argument('--work-dir', default='work_dirs/compare_seg_init')
    parser.add_argument('--records-dir', default=None,
                        help='default docs/results/runs (quick: under the '
                        'work dir)')
    parser.add_argument('--cls-work-dir',
                        default='work_dirs/replicate_fashion_mnist',
                        help="the classification study's work dir (its "
                        'checkpoints)')
    parser.add_argument('--cls-records-dir', default=None,
                        help="the classification study's records (default: "
                        '--records-dir)')
    parser.add_argument('--out-md', default=None)
    parser.add_argument('--summarise-only', action='store_true')
    args = parser.parse_args(argv)
    absolute = lambda p: p if osp.isabs(p) else osp.join(REPO, p)  # noqa
    args.work_dir = absolute(args.work_dir)
    args.cls_work_dir = absolute(args.cls_work_dir)
    if args.quick:
        args.regime = ['quick']
        args.records_dir = args.records_dir or osp.join(args.work_dir,
                                                        'records')
        args.out_md = args.out_md or osp.join(args.work_dir, 'RESULTS.md')
        args.cls_work_dir = osp.join(args.work_dir, 'classification')
        args.cls_records_dir = osp.join(args.cls_work_dir, 'records')
    args.regime = args.regime or ['n5000']
    args.records_dir = absolute(args.records_dir or 'docs/results/runs')
    args.cls_records_dir = absolute(args.cls_records_dir or
                                    args.records_dir)
    args.out_md = absolute(args.out_md or 'docs/results/fashion_scenes.md')
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    if args.quick and not args.summarise_only:
        # the quick classification study first: its headline runs are the
        # backbones
        cls_study.main(['--quick', '--work-dir', args.cls_work_dir])
    studies = [Study(r, args.work_dir, args.records_dir, args.cls_work_dir,
                     args.cls_records_dir) for r in args.regime]
    if not args.summarise_only:
        check_fashion_mnist(osp.join(REPO, cls_study.DATA_ROOT))
        by_name = {}

        def todo():
            out = []
            for st in studies:
                for spec in st.plan(st.records()[0])['runnable']:
                    key = f"{spec['regime']}/{run_name(spec)}"
                    by_name[key] = st
                    out.append((key, spec))
            return out

        # a run still going when the budget ends stops at its next
        # checkpoint; the next invocation continues it
        end = time.time() + 3600 * args.max_hours

        study.run_pool(
            todo, lambda spec: by_name[
                f"{spec['regime']}/{run_name(spec)}"].execute(
                    spec, hours=max(0.0, end - time.time()) / 3600),
            args.jobs, args.max_hours, args.max_runs,
            log=lambda m: print(m, flush=True))
    summary = summarise(studies, args.out_md,
                        ' (quick smoke run)' if args.quick else '')
    with open(args.out_md) as f:
        print(f.read())
    return summary


if __name__ == '__main__':
    main()

"""Write ``configs/*/metafile.yml`` and ``model-index.yml`` from the configs.

Every config of ``configs/cosub``, ``configs/upernet`` and ``configs/demo``
is listed in mmpretrain's model-zoo format. Where the paper (or the baseline
method's paper) gives a number for a config, it is listed under ``Results``
with ``Reference: true`` and its source: these are the papers' numbers, not
results measured by cosub_mm. ``--check`` fails when the files on disk differ
from what this script would write (the test suite runs it).

Usage:
    python tools/misc/gen_model_index.py [--check]
"""
import argparse
import glob
import os.path as osp
import sys
from typing import Dict, List

import yaml

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
COSUB_PAPER = dict(
    Title='Co-training 2^L Submodels for Visual Recognition',
    URL='https://arxiv.org/abs/2212.04884')
COSUB_SRC = ('cosub paper (arXiv 2212.04884), as listed by Papers with Code; '
             'pretraining set not stated there (ImageNet-21k is our reading)')
COSUB_S_SRC = ('UNVERIFIED: Papers with Code listing of arXiv 2212.04884 '
               '(ViT-S@224 cosub), pretraining set not stated; equals DeiT '
               'III-S ImageNet-21k -> 1k (83.1) exactly')
DEIT3_SRC = 'DeiT III (facebookresearch/deit README_revenge.md)'
DEIT3_LOG_SRC = ('DeiT III (facebookresearch/deit README_revenge.md training '
                 'log, epoch 800, evaluated at 192 px)')

# config name -> (task, dataset, metrics, source). Papers' numbers only.
REFERENCES: Dict[str, tuple] = {
    'cosub_deit3-small-p16_in21k-pre_16xb128-lamb-50e_in1k': (
        'Image Classification', 'ImageNet-1k', {'Top 1 Accuracy': 83.1},
        COSUB_S_SRC),
    'cosub_deit3-base-p16_in21k-pre_32xb64-lamb-50e_in1k': (
        'Image Classification', 'ImageNet-1k', {'Top 1 Accuracy': 86.3},
        COSUB_SRC),
    'cosub_deit3-large-p16_in21k-pre_32xb64-lamb-50e_in1k': (
        'Image Classification', 'ImageNet-1k', {'Top 1 Accuracy': 87.5},
        COSUB_SRC),
    'cosub_deit3-base-p16_in21k-pre_32xb64-lamb-50e_in1k-448px': (
        'Image Classification', 'ImageNet-1k', {'Top 1 Accuracy': 87.4},
        'cosub paper abstract (arXiv 2212.04884)'),
    'deit3-small-p16_8xb256-lamb-800e_in1k': (
        'Image Classification', 'ImageNet-1k', {'Top 1 Accuracy': 81.4},
        DEIT3_SRC),
    # B and L: trained at 192 px, then finetuned at 224 px (the model zoo's
    # 224 px numbers belong to the finetuned models)
    'deit3-base-p16_8xb256-lamb-800e_in1k-192px': (
        'Image Classification', 'ImageNet-1k', {'Top 1 Accuracy': 82.82},
        DEIT3_LOG_SRC),
    'deit3-large-p16_32xb64-lamb-800e_in1k-192px': (
        'Image Classification', 'ImageNet-1k', {'Top 1 Accuracy': 84.02},
        DEIT3_LOG_SRC),
    'deit3-base-p16_in1k-192px-pre_8xb64-adamw-20e_in1k': (
        'Image Classification', 'ImageNet-1k', {'Top 1 Accuracy': 83.8},
        DEIT3_SRC),
    'deit3-large-p16_in1k-192px-pre_8xb64-adamw-20e_in1k': (
        'Image Classification', 'ImageNet-1k', {'Top 1 Accuracy': 84.9},
        DEIT3_SRC),
    'deit3-small-p16_in21k-pre_16xb128-lamb-50e_in1k': (
        'Image Classification', 'ImageNet-1k', {'Top 1 Accuracy': 83.1},
        DEIT3_SRC),
    'deit3-base-p16_in21k-pre_32xb64-lamb-50e_in1k': (
        'Image Classification', 'ImageNet-1k', {'Top 1 Accuracy': 85.7},
        DEIT3_SRC),
    'deit3-large-p16_in21k-pre_32xb64-lamb-50e_in1k': (
        'Image Classification', 'ImageNet-1k', {'Top 1 Accuracy': 87.0},
        DEIT3_SRC),
}

COLLECTIONS = {
    'cosub': dict(
        Name='Cosub',
        Metadata={'Training Data': ['ImageNet-1k', 'ImageNet-21k'],
                  'Training Techniques': ['LAMB', 'Mixup', 'CutMix',
                                          'Stochastic Depth',
                                          'Submodel co-training']},
        Paper=COSUB_PAPER,
        README='configs/cosub/README.md'),
    'upernet': dict(
        Name='UperNet-Cosub',
        Metadata={'Training Data': ['ADE20k'],
                  'Architecture': ['UperNet']},
        Paper=COSUB_PAPER,
        README='configs/upernet/README.md'),
    'demo': dict(
        Name='Cosub-Demo',
        Metadata={'Training Data': ['Fashion-MNIST']},
        Paper=COSUB_PAPER,
        README='configs/demo/README.md'),
}


def model_entry(folder: str, path: str) -> dict:
    """The metafile entry of one config."""
    name = osp.splitext(osp.basename(path))[0]
    entry = {
        'Name': name,
        'In Collection': COLLECTIONS[folder]['Name'],
        'Metadata': {'Cosub': name.startswith('cosub_') or '-cosub' in name},
        'Config': osp.relpath(path, REPO),
    }
    if name in REFERENCES:
        task, dataset, metrics, source = REFERENCES[name]
        entry['Results'] = [{
            'Task': task, 'Dataset': dataset, 'Metrics': metrics,
            'Reference': True, 'Source': source}]
    else:
        entry['Results'] = None
    return entry


def render() -> Dict[str, str]:
    """Return the file path -> YAML text of every metafile."""
    files: Dict[str, str] = {}
    imports: List[str] = []
    for folder, collection in COLLECTIONS.items():
        configs = sorted(glob.glob(osp.join(REPO, 'configs', folder, '*.py')))
        if not configs:
            continue
        meta = {'Collections': [collection],
                'Models': [model_entry(folder, p) for p in configs]}
        rel = f'configs/{folder}/metafile.yml'
        files[rel] = ('# Generated by tools/misc/gen_model_index.py: edit '
                      'the script, not this file.\n' +
                      yaml.safe_dump(meta, sort_keys=False, width=100))
        imports.append(rel)
    files['model-index.yml'] = yaml.safe_dump({'Import': imports},
                                              sort_keys=False)
    return files


def main() -> int:
    """Write the metafiles, or with --check compare them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true',
                        help='fail if the files on disk are out of date')
    args = parser.parse_args()
    stale = []
    for rel, text in render().items():
        path = osp.join(REPO, rel)
        current = open(path).read() if osp.exists(path) else None
        if current == text:
            continue
        stale.append(rel)
        if not args.check:
            with open(path, 'w') as f:
                f.write(text)
    if args.check and stale:
        print('out of date (run tools/misc/gen_model_index.py): ' +
              ', '.join(stale), file=sys.stderr)
        return 1
    print('\n'.join(f'wrote {rel}' for rel in stale) if stale else
          'metafiles up to date')
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Shared fixtures: the repo root, tool runners and tiny generated data sets."""
import os
import os.path as osp
import socket
import subprocess
from typing import List, Optional

import numpy as np
import pytest
from PIL import Image

from cosub_mm import runs

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TEST_CONFIGS = osp.join(REPO, 'tests', 'data', 'configs')


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now (for a launched run)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tool_env(**extra: str) -> dict:
    """Environment for subprocesses: this checkout first on the path."""
    extra.setdefault('OMP_NUM_THREADS', os.environ.get('OMP_NUM_THREADS', '2'))
    return runs.tool_env(**extra)


def load_tool(path: str):
    """Import a ``tools/`` script as a module (they are not a package)."""
    import importlib.util
    name = osp.splitext(osp.basename(path))[0] + '_tool'
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(args: List[str], timeout: float = 300,
             env: Optional[dict] = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python tools/<args>`` from the repo root; show output on error."""
    proc = runs.run_tool(args, env=env or tool_env(), timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f'{" ".join(args)} exited {proc.returncode}\n'
            f'--- stdout\n{proc.stdout[-4000:]}\n'
            f'--- stderr\n{proc.stderr[-6000:]}')
    return proc


def build_mmpretrain(cfg: dict):
    """Build a model config (classifier or backbone) under mmpretrain's scope.

    A classification config sets ``default_scope = 'mmpretrain'``; without
    it, a scope left current by an earlier test's mmseg Runner in the same
    worker would resolve the classifier's unscoped parts (its default
    ``ClsDataPreprocessor``, heads) in mmseg's registry.
    """
    from mmengine.registry import DefaultScope

    from cosub_mm.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg)


def make_cls_dataset(root: str, num_classes: int = 3, per_class: int = 8,
                     size: int = 32, seed: int = 0) -> str:
    """Write an ImageNet-layout folder (train/ and val/) of tiny PNGs.

    Each class has its own mean colour, so a classifier can learn it.
    """
    rng = np.random.default_rng(seed)
    for split in ('train', 'val'):
        for c in range(num_classes):
            folder = osp.join(root, split, f'class_{c}')
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                base = np.zeros((size, size, 3), np.float64)
                base[..., c % 3] = 160
                img = np.clip(base + rng.normal(0, 40, base.shape), 0, 255)
                Image.fromarray(img.astype(np.uint8)).save(
                    osp.join(folder, f'{i:03d}.png'))
    return root


def make_seg_dataset(root: str, num_classes: int = 4, n_train: int = 6,
                     n_val: int = 3, size: int = 64, seed: int = 0) -> str:
    """Write an ADE20k-layout set: JPEG images and PNG label maps.

    Labels use ADE's convention: 0 is 'other' (ignored with
    ``reduce_zero_label``), classes are 1..num_classes.
    """
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 255, (num_classes + 1, 3))
    for split, n in (('training', n_train), ('validation', n_val)):
        os.makedirs(osp.join(root, 'images', split), exist_ok=True)
        os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
        for i in range(n):
            label = np.ones((size, size), np.uint8)
            for c in range(2, num_classes + 1):
                y, x = rng.integers(0, size - 16, 2)
                h, w = rng.integers(8, 24, 2)
                label[y:y + h, x:x + w] = c
            label[:2] = 0
            img = colours[label] + rng.normal(0, 10, (size, size, 3))
            img = np.clip(img, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(
                osp.join(root, 'images', split, f'{i:03d}.jpg'))
            Image.fromarray(label).save(
                osp.join(root, 'annotations', split, f'{i:03d}.png'))
    return root


@pytest.fixture(scope='session')
def cls_data_root(tmp_path_factory) -> str:
    """A tiny ImageNet-layout classification set."""
    return make_cls_dataset(str(tmp_path_factory.mktemp('cls_data')))


@pytest.fixture(scope='session')
def seg_data_root(tmp_path_factory) -> str:
    """A tiny ADE20k-layout segmentation set."""
    return make_seg_dataset(str(tmp_path_factory.mktemp('seg_data')))


def cosub_loss_and_grads(model, img: int, num_classes: int, seed: int = 3):
    """Losses and every parameter gradient of one cosub loss on fixed data.

    The input and labels are fixed; ``seed`` seeds the drop-path draws, so
    two models (efficient and masked) called with one seed draw alike.
    """
    import torch
    from mmpretrain.structures import DataSample
    model.train()
    model.zero_grad()
    x = torch.randn(8, 3, img, img,
                    generator=torch.Generator().manual_seed(5))
    samples = [DataSample().set_gt_label(i % num_classes) for i in range(8)]
    torch.manual_seed(seed)
    losses = model.loss(x, samples)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    return losses, {k: p.grad.clone() if p.grad is not None else
                    torch.zeros_like(p) for k, p in model.named_parameters()}


@pytest.fixture
def table():
    """The table of convertible blocks (EFFICIENT_BLOCKS), restored after
    the test."""
    from cosub_mm.models.drop_path import EFFICIENT_BLOCKS
    saved = dict(EFFICIENT_BLOCKS)
    yield EFFICIENT_BLOCKS
    EFFICIENT_BLOCKS.clear()
    EFFICIENT_BLOCKS.update(saved)


@pytest.fixture
def plans(monkeypatch):
    """The SubmodelPlans the cosub steps draw, in order."""
    from cosub_mm.models import cosub_step
    drawn = []
    draw = cosub_step.draw_submodel_plan

    def recording(*args, **kwargs):
        drawn.append(draw(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(cosub_step, 'draw_submodel_plan', recording)
    return drawn

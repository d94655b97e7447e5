"""tools/dataset_converters/make_fashion_scenes.py: the fashion-scenes set."""
import glob
import os.path as osp

import numpy as np
import pytest
from PIL import Image

import cosub_mm  # noqa: F401
from conftest import REPO, load_tool, run_tool

TOOL = osp.join(REPO, 'tools', 'dataset_converters', 'make_fashion_scenes.py')
FASHION = osp.join(REPO, 'data', 'fashion_mnist')


def _tool():
    return load_tool(TOOL)


@pytest.fixture(scope='module')
def cli_root(tmp_path_factory) -> str:
    """The set written by the command line the demo uses."""
    root = str(tmp_path_factory.mktemp('scenes_cli'))
    proc = run_tool([TOOL, '--out-dir', root, '--seed', '3', '--num-train',
                     '5', '--num-val', '2', '--size', '48'])
    assert 'wrote 5 training and 2 validation scenes' in proc.stdout
    assert '7/7' in proc.stdout  # mmengine's progress bar reached the end
    return root


def _files(root: str, kind: str, split: str):
    ext = 'jpg' if kind == 'images' else 'png'
    return sorted(glob.glob(osp.join(root, kind, split, f'*.{ext}')))


def test_ade20k_layout_and_label_range(cli_root):
    for split, n in (('training', 5), ('validation', 2)):
        images, anns = _files(cli_root, 'images', split), _files(
            cli_root, 'annotations', split)
        assert len(images) == len(anns) == n
        assert [osp.basename(p)[:-4] for p in images] == \
            [osp.basename(p)[:-4] for p in anns]
        for img_path, ann_path in zip(images, anns):
            img = np.asarray(Image.open(img_path))
            ann = np.asarray(Image.open(ann_path))
            assert img.shape == (48, 48, 3) and ann.shape == (48, 48)
            assert ann.dtype == np.uint8 and ann.max() <= 15
            assert (ann >= 6).any()  # at least one Fashion-MNIST item
            assert (ann[ann > 0] <= 5).any()  # some texture background
            assert (ann == 0).mean() < 0.2  # 'other' is only item rims


def test_deterministic_by_seed(cli_root, tmp_path):
    tool = _tool()
    same, other = str(tmp_path / 'same'), str(tmp_path / 'other')
    for root, seed in ((same, 3), (other, 4)):
        tool.make_fashion_scenes(root, seed=seed, num_train=5, num_val=2,
                                 size=48, fashion_root=FASHION,
                                 show_progress=False)
    for kind in ('images', 'annotations'):
        for split in ('training', 'validation'):
            for a, b in zip(_files(cli_root, kind, split),
                            _files(same, kind, split)):
                assert open(a, 'rb').read() == open(b, 'rb').read()
    a = np.asarray(Image.open(_files(cli_root, 'annotations', 'training')[0]))
    b = np.asarray(Image.open(_files(other, 'annotations', 'training')[0]))
    assert not np.array_equal(a, b)


def test_items_keep_their_pixels_and_textures_are_real_photos():
    tool = _tool()
    rng = np.random.default_rng(0)
    textures = tool.load_textures()
    assert len(textures) == 5
    items, labels = tool.load_fashion(FASHION, 'test')
    assert items.shape == (10000, 28, 28) and labels.max() == 9
    image, label = tool.make_scene(64, textures, items, labels, rng)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    # A pure texture region is a resized crop of one photograph: its
    # spread is the photograph's, not a flat colour.
    for c in np.unique(label[(label >= 1) & (label <= 5)]):
        assert image[label == c].std() > 5
    assert set(np.unique(label)) <= set(range(16))
    # RGB, not gray replicated: the channels differ on items and textures
    spread = np.ptp(image.astype(int), axis=-1)
    assert spread[label >= 6].mean() > 10
    assert spread[(label >= 1) & (label <= 5)].mean() > 5


def test_tint_keeps_the_luma_and_gives_the_colour():
    tool = _tool()
    gray = np.random.default_rng(0).uniform(0, 255, (5, 7))
    gains = np.array([1.0, 0.5, 0.25])
    rgb = tool.tint(gray, gains)
    assert rgb.shape == (5, 7, 3)
    np.testing.assert_allclose(rgb @ np.array([0.299, 0.587, 0.114]), gray)
    np.testing.assert_allclose(rgb[..., 1] / rgb[..., 0], 0.5)


def test_read_idx_rejects_other_files(tmp_path):
    bad = tmp_path / 'x-idx3-ubyte'
    bad.write_bytes(b'\x00\x00\x0d\x03' + b'\x00' * 12)
    with pytest.raises(ValueError, match='idx'):
        _tool().read_idx(str(bad))
    with pytest.raises(FileNotFoundError, match='nothing-here'):
        _tool().read_idx(str(tmp_path / 'nothing-here'))


def test_if_changed_rewrites_only_a_different_or_unfinished_set(tmp_path):
    tool = _tool()
    root = str(tmp_path / 'scenes')
    params = dict(seed=1, num_train=2, num_val=1, size=32)
    assert not tool.is_complete(root, **params)
    tool.make_fashion_scenes(root, fashion_root=FASHION,
                             show_progress=False, **params)
    assert tool.is_complete(root, **params)
    assert not tool.is_complete(root, **dict(params, size=40))
    # the command line writes nothing for a finished set of its parameters
    args = [TOOL, '--out-dir', root, '--seed', '1', '--num-train', '2',
            '--num-val', '1', '--size', '32', '--if-changed']
    assert 'up to date' in run_tool(args).stdout
    # a set whose stamp is of an older format (or gone): not complete
    stamp = osp.join(root, '.complete')
    with open(stamp) as f:
        assert '"format": 2' in f.read()
    with open(stamp, 'w') as f:
        f.write('{"format": 1}')
    assert not tool.is_complete(root, **params)
    # a rewrite removes the stamp first: interrupted, it stays incomplete

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    tool.write_split, original = interrupted, tool.write_split
    with pytest.raises(KeyboardInterrupt):
        tool.make_fashion_scenes(root, fashion_root=FASHION,
                                 show_progress=False, **params)
    tool.write_split = original
    assert not osp.exists(stamp)

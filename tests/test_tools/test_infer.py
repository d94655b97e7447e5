"""tools/infer.py: the demo models on image files, folders and globs."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image

import cosub_mm  # noqa: F401
from cosub_mm.datasets import FashionScenesDataset
from conftest import REPO, load_tool, run_tool

TOOL = osp.join(REPO, 'tools', 'infer.py')
CLS_CFG = osp.join(
    REPO, 'configs', 'demo',
    'cosub_vit-6l-96d-p7_1xb256-adamw-700i_fashion-mnist.py')
SEG_CFG = osp.join(REPO, 'configs', 'demo', 'upernet_fashion-scenes.py')
SCENES = osp.join(REPO, 'tools', 'dataset_converters',
                  'make_fashion_scenes.py')
FASHION = osp.join(REPO, 'data', 'fashion_mnist')


def _tool():
    return load_tool(TOOL)


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """Randomly initialised demo classifier and UperNet, saved as runner
    checkpoints (with the dataset meta the runner writes) and in memory."""
    from mmpretrain.registry import MODELS as CLS_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    root = tmp_path_factory.mktemp('infer_models')
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        cfg = Config.fromfile(CLS_CFG)
        cls = CLS_MODELS.build(cfg.model)
    cls.init_weights()
    seg_cfg = Config.fromfile(SEG_CFG)
    seg_cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmseg'):
        seg = SEG_MODELS.build(seg_cfg.model)
    seg.init_weights()
    found = {}
    for name, model in (('cls', cls), ('seg', seg)):
        found[name] = str(root / f'{name}.pth')
        torch.save({'state_dict': model.state_dict(), 'meta': {}},
                   found[name])
        model.eval()
        found[f'{name}_model'] = model
    return found


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """Two RGB scenes, a grayscale copy of one and an unreadable file."""
    root = tmp_path_factory.mktemp('infer_images')
    run_tool([SCENES, '--out-dir', str(root / 'set'), '--num-train', '1',
              '--num-val', '2', '--size', '64'])
    folder = root / 'mine'
    folder.mkdir()
    for i in range(2):
        Image.open(root / 'set' / 'images' / 'validation' /
                   f'scene_{i:05d}.jpg').save(folder / f'scene{i}.png')
    Image.open(folder / 'scene0.png').convert('L').save(folder / 'gray.png')
    (folder / 'broken.jpg').write_bytes(b'not an image')
    return folder


def test_segmentation_folder_writes_maps_and_legends_and_reports_the_bad_file(
        models, images, tmp_path):
    out = tmp_path / 'out'
    proc = run_tool([TOOL, SEG_CFG, models['seg'], str(images),
                     '--out-dir', str(out)], check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f'skipped {images / "broken.jpg"}' in proc.stderr
    assert '1 of 4 images failed' in proc.stderr
    assert f'note: {images / "gray.png"}: grayscale image, converted' in \
        proc.stdout
    rows = json.loads((out / 'predictions.json').read_text())
    assert [osp.basename(r['image']) for r in rows] == \
        ['gray.png', 'scene0.png', 'scene1.png']
    from mmseg.apis import inference_model, init_model
    model = init_model(Config.fromfile(SEG_CFG), models['seg'], 'cpu')
    for row in rows:
        stem = osp.splitext(osp.basename(row['image']))[0]
        labels = np.asarray(Image.open(out / f'{stem}_labels.png'))
        # the model itself, called through mmseg's API on the same file
        expected = inference_model(model, row['image'])
        np.testing.assert_array_equal(
            labels, expected.pred_sem_seg.data[0].numpy())
        # no dataset meta in the checkpoint: the config's dataset names them
        names = FashionScenesDataset.METAINFO['classes']
        ids, counts = np.unique(labels, return_counts=True)
        assert row['classes'] == {
            names[i]: round(100 * c / labels.size, 1)
            for i, c in sorted(zip(ids, counts), key=lambda t: -t[1])}
        overlay = Image.open(out / f'{stem}_overlay.png')
        assert overlay.width > 256 and overlay.height >= 256


def test_classification_prints_the_models_top_classes(
        models, tmp_path, capsys):
    from mmpretrain.datasets import FashionMNIST
    from mmpretrain.structures import DataSample
    dataset = FashionMNIST(data_root=FASHION, test_mode=True,
                           download=False, pipeline=[])
    digits = [dataset[i]['img'] for i in range(3)]
    paths = []
    for i, img in enumerate(digits):
        paths.append(str(tmp_path / f'item{i}.png'))
        Image.fromarray(img).save(paths[-1])
    assert _tool().main([CLS_CFG, models['cls'], str(tmp_path / '*.png'),
                         '--topk', '2', '--out-dir',
                         str(tmp_path / 'out')]) == 0
    printed = capsys.readouterr().out
    rows = json.loads((tmp_path / 'out' / 'predictions.json').read_text())
    classes = FashionMNIST.METAINFO['classes']
    model = models['cls_model']
    for path, img, row in zip(paths, digits, rows):
        batch = model.data_preprocessor(dict(
            inputs=[torch.from_numpy(img)[None]],
            data_samples=[DataSample()]), False)
        with torch.no_grad():
            scores = model(**batch, mode='predict')[0].pred_score
        top = torch.argsort(scores, descending=True)[:2].tolist()
        assert row['image'] == path
        assert [t['label'] for t in row['top']] == top
        assert [t['name'] for t in row['top']] == [classes[k] for k in top]
        assert row['top'][0]['score'] == pytest.approx(
            float(scores[top[0]]), abs=1e-4)
        assert f'{path}: {classes[top[0]]} ' in printed


def test_colour_photo_for_the_gray_classifier_is_converted_with_notes(
        models, images, capsys):
    scene = str(images / 'scene1.png')
    assert _tool().main([CLS_CFG, models['cls'], scene]) == 0
    printed = capsys.readouterr().out
    assert f'note: {scene}: colour image, converted to grayscale' in printed
    assert f"note: {scene}: resized from 64x64 to the model's 28x28" in \
        printed


def test_a_checkpoint_of_another_config_is_refused(models, images):
    with pytest.raises(SystemExit, match=r'(?s)does not match.*shape'):
        _tool().main([CLS_CFG, models['seg'], str(images / 'scene0.png')])


def test_bad_inputs_name_the_path(models, images, tmp_path, monkeypatch):
    tool = _tool()
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(SystemExit, match=f'folder {empty} holds no images'):
        tool.expand_inputs([str(empty)])
    with pytest.raises(SystemExit, match='nowhere.png: no such file'):
        tool.expand_inputs([str(tmp_path / 'nowhere.png')])
    with pytest.raises(SystemExit, match=r'\*.tif matches no image'):
        tool.expand_inputs([str(images / '*.tif')])
    with pytest.raises(ValueError, match='broken.jpg: not a readable image'):
        tool.read_image(str(images / 'broken.jpg'), 3)
    with pytest.raises(SystemExit, match='segmentation config .* --out-dir'):
        tool.main([SEG_CFG, models['seg'], str(images / 'scene0.png')])
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(SystemExit, match='no CUDA device'):
        tool.main([SEG_CFG, models['seg'], str(images), '--device', 'cuda'])


def test_one_image_segmentation_is_one_full_size_map(
        models, images, tmp_path):
    """(mmseg's inferencer unwraps the lists of a single input.)"""
    scene = str(images / 'scene1.png')
    assert _tool().main([SEG_CFG, models['seg'], scene, '--out-dir',
                         str(tmp_path)]) == 0
    labels = np.asarray(Image.open(tmp_path / 'scene1_labels.png'))
    assert labels.shape == (64, 64)
    assert Image.open(tmp_path / 'scene1_overlay.png').size == (256 + 190,
                                                                256)

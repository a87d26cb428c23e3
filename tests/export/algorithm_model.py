"""Write a model.tar.gz the way the built-in Semantic Segmentation algorithm does (run in the export environment).

A GluonCV network with random weights (ImageNet backbone not downloaded: ``pretrained_base=False``) at a small size,
saved with ``save_parameters`` as ``model_algo-1`` (also ``model_best.params``), next to ``hyperparams.json`` with
string values, as the algorithm records them.

    python tests/export/algorithm_model.py --output model.tar.gz --head fcn --num-classes 19 --width 64 --height 32
        [--no-aux] [--backbone resnet-50] [--hyperparameter-classes N] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path

HEAD_CLASSES = {"fcn": "FCN", "psp": "PSPNet", "deeplab": "DeepLabV3"}
BACKBONES = {"resnet-50": "resnet50", "resnet-101": "resnet101"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--head", default="fcn", choices=list(HEAD_CLASSES))
    parser.add_argument("--backbone", default="resnet-50", choices=list(BACKBONES))
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--hyperparameter-classes", type=int, help="num_classes to record (default: the network's)")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--no-aux", action="store_true", help="save without GluonCV's auxiliary head")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import mxnet as mx
    from gluoncv import model_zoo

    mx.random.seed(args.seed)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = getattr(model_zoo, HEAD_CLASSES[args.head])(
            args.num_classes, backbone=BACKBONES[args.backbone], aux=not args.no_aux, height=args.height,
            width=args.width, pretrained_base=False)
        net.initialize(mx.init.Xavier(magnitude=2), force_reinit=True)
    net(mx.nd.zeros((1, 3, args.height, args.width)))  # shapes of the deferred parameters
    # A trained network's BatchNorm statistics are not 0/1: random ones exercise the export more than the defaults.
    for name, param in net._collect_params_with_prefix().items():
        if name.endswith("running_var"):
            param.set_data(mx.nd.random.uniform(0.5, 2.0, shape=param.shape))
        elif name.endswith(("running_mean", "beta")):
            param.set_data(mx.nd.random.normal(0, 0.1, shape=param.shape))

    hyperparameters = {
        "algorithm": args.head, "backbone": args.backbone,
        "num_classes": str(args.hyperparameter_classes or args.num_classes),
        "use_pretrained_model": "True", "crop_size": "240", "epochs": "10", "learning_rate": "0.001",
        "mini_batch_size": "8", "optimizer": "sgd", "num_training_samples": "100",
    }
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        net.save_parameters(str(folder / "model_algo-1"))
        net.save_parameters(str(folder / "model_best.params"))
        (folder / "hyperparams.json").write_text(json.dumps(hyperparameters))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(args.output, "w:gz", compresslevel=1) as tar:  # random weights do not compress
            for name in ("hyperparams.json", "model_algo-1", "model_best.params"):
                tar.add(folder / name, arcname=name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

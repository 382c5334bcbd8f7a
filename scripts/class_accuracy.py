#!/usr/bin/env python
"""Digits generators judged by a classifier trained on the real digits (scikit-learn's SVM on the
original 8x8 images; generated samples are shrunk back to 8x8 by area averaging).

Conditional generators: for each class k, `--per-class` samples are generated with `--class k`;
prints per-class and overall agreement with the asked class. Unconditional generators: prints
how many samples fall in each class (do all ten appear?) and the share the classifier labels
with probability >= 0.9 (recognisable digits), next to the same figure for real digits.

    python scripts/class_accuracy.py runs/biggan_digits --per-class 100
    python scripts/class_accuracy.py runs/sngan_digits --num 1000
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch
import torch.nn.functional as F


def train_classifier(seed: int = 0):
    """(classifier on all real digits, its accuracy when trained on 75% and tested on the rest,
    share of held-out real digits it labels with probability >= 0.9)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.svm import SVC

    warnings.filterwarnings("ignore", category=FutureWarning)  # SVC(probability=...) is fine for this
    digits = load_digits()
    x = digits.images.reshape(len(digits.images), -1) / 16.0
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.25, random_state=seed,
                                                        stratify=digits.target)
    check = SVC(gamma=10.0 / 64, C=10.0, probability=True, random_state=seed).fit(x_train, y_train)
    confident_real = float((check.predict_proba(x_test).max(1) >= 0.9).mean())
    model = SVC(gamma=10.0 / 64, C=10.0, probability=True, random_state=seed).fit(x, digits.target)
    return model, check.score(x_test, y_test), confident_real


def shrink(images: torch.Tensor) -> np.ndarray:
    return F.adaptive_avg_pool2d((images.clamp(-1, 1) + 1) / 2, 8).flatten(1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint file or run folder of a conditional digits generator")
    parser.add_argument("--per-class", type=int, default=100, help="conditional: samples per class")
    parser.add_argument("--num", type=int, default=1000, help="unconditional: samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--truncation", type=float)
    args = parser.parse_args()
    from ganforge.generation.drawing import draw, load_generator

    classifier, held_out, confident_real = train_classifier()
    print(f"classifier (SVM on real 8x8 digits): {held_out:.1%} accurate on held-out real digits, "
          f"{confident_real:.1%} of them labelled with probability >= 0.9")
    loaded = load_generator(args.checkpoint, device="cpu")
    if loaded.num_classes == 0:
        images = draw(loaded, args.num, seed=args.seed, truncation=args.truncation)
        probabilities = classifier.predict_proba(shrink(images))
        counts = np.bincount(probabilities.argmax(1), minlength=10)
        print(f"{args.num} samples from {loaded.checkpoint} (step {loaded.step}):")
        print(f"  predicted classes: {counts.tolist()} ({int((counts > 0).sum())} of 10 classes present, "
              f"smallest {counts.min() / args.num:.1%})")
        print(f"  labelled with probability >= 0.9: {(probabilities.max(1) >= 0.9).mean():.1%} "
              f"(real digits: {confident_real:.1%})")
        return
    if loaded.num_classes != 10:
        raise SystemExit(f"{args.checkpoint}: not a digits generator ({loaded.num_classes} classes)")
    from sklearn.datasets import load_digits

    digits = load_digits()
    real = digits.images.reshape(len(digits.images), -1) / 16.0
    correct = []
    for k in range(10):
        images = draw(loaded, args.per_class, seed=args.seed + k, class_index=k, truncation=args.truncation)
        small = shrink(images)
        predicted = classifier.predict(small)
        correct.append(predicted == k)
        counts = np.bincount(predicted, minlength=10)
        # Diversity within the class: mean distance between samples, against real digits of the class.
        spread = float(torch.pdist(torch.from_numpy(small)).mean())
        real_spread = float(torch.pdist(torch.from_numpy(real[digits.target == k])).mean())
        print(f"class {k}: {np.mean(predicted == k):6.1%} agree   (predicted counts {counts.tolist()}); "
              f"spread {spread:.2f} (real {real_spread:.2f})")
    overall = float(np.mean(np.concatenate(correct)))
    print(f"overall: {overall:.1%} of {10 * args.per_class} samples from {loaded.checkpoint} (step {loaded.step}) "
          "are the class they were asked for")


if __name__ == "__main__":
    main()

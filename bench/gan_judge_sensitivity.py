"""How the GAN benchmark's judge reacts to low-level changes of *real* digits.

The domain metrics of ``python -m bench.gan_mnist`` (Frechet distance and Inception-style score in the features of
advkit's default MNIST LeNet) are computed here for 10,000 real training digits as they are and after a
light Gaussian blur, a JPEG round trip and a 2x down-and-up scaling, against the test digits. It shows what a
"5x the train-vs-test floor" FD target asks of a generator: sharpness statistics as exact as real data's.

    python -m bench.gan_judge_sensitivity
    python -m bench.gan_judge_sensitivity --quick      # 1,000 digits, written to gan_judge_sensitivity_quick.json
"""

from __future__ import annotations

import sys

from advkit.data import load_dataset
from advkit.data import transforms as T
from advkit.gan.metrics import extract, feature_stats, frechet_distance, inception_score
from bench._common import RESULTS, write_result
from bench.gan_mnist import Judge


def main() -> None:
    n = 10000 if "--quick" not in sys.argv else 1000
    judge = Judge(n, None, 0)
    real = load_dataset("mnist", "train").subset(n, offset=20000).images  # not the floor's training digits
    variants = {"real (other train digits)": real, "blur sigma 1": T.blur(real, 1.0), "JPEG q50": T.jpeg(real, 50),
                "down/up 0.5": T.rescale(real, 0.5)}
    rows = []
    for name, imgs in variants.items():
        f, p = extract(judge.model, imgs, 500)
        fd = frechet_distance(*feature_stats(f.numpy()), *judge.stats_test)
        rows.append({"variant": name, "fd": fd, "fd_ratio": fd / judge.fd_floor,
                     "is": inception_score(p.numpy(), judge.splits)[0]})
        print(f"{name}: FD {fd:.2f} ({fd / judge.fd_floor:.1f}x the floor {judge.fd_floor:.2f}), "
              f"IS {rows[-1]['is']:.2f}")
    result = {"n": n, "classifier": judge.classifier, "reference": judge.reference, "rows": rows}
    out = RESULTS / f"gan_judge_sensitivity{'_quick' if n < 10000 else ''}.json"
    write_result(out, "gan_judge_sensitivity", result, device="cpu", table=n == 10000)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

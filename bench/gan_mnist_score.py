"""Judge saved generators as ``bench.gan_mnist`` judges its runs (same judge, same 10,000 samples): e.g. the
time-to-quality snapshots (``RUN/snapshots/g*.safetensors``) of a ``--judge-every`` run stopped early.

    python -m bench.gan_mnist_score RUN/snapshots/g000940.safetensors RUN/snapshots/g000940_raw.safetensors \\
        --out bench/results/NAME.json

is ``python -m bench.gan_mnist --score ... --out ...``; the result lists each generator's scores, its
``g_steps`` / ``epoch`` / ``train_s`` when it is a snapshot, the targets it meets, and ``first_met``.
"""

from __future__ import annotations

import sys

from bench.gan_mnist import main

if __name__ == "__main__":
    if "--score" not in sys.argv:
        sys.argv = [sys.argv[0], "--score", *sys.argv[1:]]
    main()

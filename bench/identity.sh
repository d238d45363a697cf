#!/usr/bin/env bash
# Bit-identity check for refactors: runs a few shipped configs at smoke size, deterministically, on the CPU,
# and prints the sha256 of what each wrote (weights, generated samples, the report without its timings).
# Run it before and after a change and compare the two outputs line by line:
#   bash bench/identity.sh /tmp/id-before > before.txt; ...; bash bench/identity.sh /tmp/id-after > after.txt
#   diff before.txt after.txt
set -euo pipefail
out="${1:?usage: bench/identity.sh OUTDIR}"
rm -rf "$out"; mkdir -p "$out"
export OMP_NUM_THREADS=1 ADVKIT_CACHE="$out/cache"
sha() {  # the tensors of a safetensors file, by name (metadata may change; weights must not)
  python - "$1" <<'PY'
import hashlib, sys
from safetensors.torch import load_file
h = hashlib.sha256()
for k, v in sorted(load_file(sys.argv[1]).items()):
    h.update(k.encode()); h.update(v.contiguous().numpy().tobytes())
print(h.hexdigest()[:16])
PY
}
strip() {  # a report without its timings and dates
  python - "$1" "$out" <<'PY'
import hashlib, json, sys
r = json.load(open(sys.argv[1]))
def clean(o):
    if isinstance(o, dict):
        return {k: clean(v) for k, v in o.items() if k not in ("created", "timing", "time_s", "time_saved_s",
                                                               "environment", "png_base64", "throughput",
                                                               "total_time_s", "images_per_s")}
    if isinstance(o, list):
        return [clean(v) for v in o]
    return o
text = json.dumps(clean(r), sort_keys=True).replace(sys.argv[2], "OUT")  # where the run wrote is no result
print(hashlib.sha256(text.encode()).hexdigest()[:16])
PY
}

python -m advkit train classifier -c configs/train/mnist_fgsm_rs.yaml --set epochs=1 --set data.train_limit=600 \
  --set data.test_limit=200 --set eval.n=100 --out "$out/cls" >/dev/null 2>&1
echo "classifier mnist_fgsm_rs  $(sha "$out/cls/model.safetensors")"
python -m advkit train classifier -c configs/train/mnist_trades.yaml --set epochs=1 --set data.train_limit=300 \
  --set data.test_limit=200 --set eval.n=100 --out "$out/trades" >/dev/null 2>&1
echo "classifier mnist_trades   $(sha "$out/trades/model.safetensors")"
python -m advkit train gan -c configs/gan/dcgan_mnist_paper.yaml --set epochs=1 --set data.train_limit=512 \
  --out "$out/gan" >/dev/null 2>&1
echo "gan dcgan_mnist_paper G   $(sha "$out/gan/generator.safetensors")"
echo "gan dcgan_mnist_paper D   $(sha "$out/gan/discriminator.safetensors")"
python -m advkit train gan -c configs/gan/dcgan_mnist.yaml --set epochs=1 --set data.train_limit=256 \
  --out "$out/gan2" >/dev/null 2>&1
echo "gan dcgan_mnist G (ema)   $(sha "$out/gan2/generator.safetensors")"
python -m advkit generate --ckpt "$out/gan" -n 64 --seed 3 --out "$out/fakes.npz" --device cpu >/dev/null 2>&1
python -c "import numpy as np,hashlib,sys;a=np.load(sys.argv[1]);print('generate 64 samples       ',hashlib.sha256(a['x'].tobytes()).hexdigest()[:16])" "$out/fakes.npz"
python -m advkit train detector -c configs/detect/mnist_dcgan.yaml --set "data.fakes=[$out/gan/generator.safetensors]" \
  --set data.n_per_class=300 --set train.epochs=1 --set train.eval.n=50 --set evaluation.n=40 \
  --set train.data.test_limit=100 --out "$out/det" >/dev/null 2>&1 || \
python -m advkit train detector -c configs/detect/mnist_dcgan.yaml --set "data.fakes=[$out/gan/generator.safetensors]" \
  --set data.n_per_class=300 --set train.epochs=1 --set train.eval.n=50 --set evaluation.n=40 \
  --out "$out/det" >/dev/null 2>&1
echo "detector mnist_dcgan      $(sha "$out/det/model.safetensors")"
echo "detector report           $(strip "$out/det/report.json")"
python -m advkit eval -c configs/eval/mnist_ci.yaml --set data.n=100 --set checks.n=50 --out "$out/eval" --quiet >/dev/null || true
echo "eval mnist_ci report      $(strip "$out/eval/report.json")"
python -m advkit attack --fgsm --model "$out/cls" --eps 0.1,0.2 -n 100 --out "$out/atk" >/dev/null
echo "attack --fgsm             $(ls "$out/atk" | tr '\n' ' ')"
for f in "$out"/atk/*.json; do echo "attack json $(basename "$f")  $(strip "$f")"; done
echo "attack adversarial.npz    $(python -c "import numpy as np,hashlib,sys;a=np.load(sys.argv[1]);print(hashlib.sha256(b''.join(a[k].tobytes() for k in sorted(a.files))).hexdigest()[:16])" "$out/atk/adversarial.npz")"

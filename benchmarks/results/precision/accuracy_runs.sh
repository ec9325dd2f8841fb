#!/bin/bash
# The fp32-vs-bf16 accuracy comparison of docs/tune.md ("Training precision"): the fmnist-int4
# recipe, 3 epochs on 10,240 training images (9,216 trained, 1,024 validation), seeds 0 and 1,
# then the deployed integer accuracy on all 10,000 test images. ~2 min per run on 2 quiet cores (2026-12-04).
set -e
for seed in 0 1; do
  for p in fp32 bf16; do
    qsnn-deploy train --preset fmnist-int4 --out run-$p-s$seed --epochs 3 --limit-train 10240 --limit-test 2000 \
        --seed $seed --precision $p --quiet
    qsnn-deploy parity run-$p-s$seed/best.pt --target int4-core --json parity-$p-s$seed.json --quiet
  done
done

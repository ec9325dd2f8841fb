#!/usr/bin/env bash
# Snapshot the fmnist-int4 training run into the shipped model: the run's best.pt becomes the
# package asset (examples/fmnist_int4/model.pt links to it), its metrics and plots are copied here.
set -euo pipefail
cd "$(dirname "$0")/../.."
run=${1:-runs/fmnist-int4}
cp "$run/best.pt" qsnn_deploy/assets/fmnist_int4.pt
cp "$run"/{metrics.csv,metrics.json,train.log,loss.png,lr.png,accuracy.png} examples/fmnist_int4/
ln -sfn ../../qsnn_deploy/assets/fmnist_int4.pt examples/fmnist_int4/model.pt
# the last row names the epoch best.pt holds (a refit, with no validation, ships its last epoch)
echo "shipped $(python -c "import json;h=json.load(open('$run/metrics.json'));b={r['epoch']:r for r in h}[h[-1]['best_epoch']];v=b['val_acc'];print(f\"epoch {b['epoch']}: val {'n/a' if v is None else f'{v:.4f}'} test {b['test_acc']:.4f}\")")"

"""Hyperparameter search: a tiny TPE study on synthetic data."""

import optuna

from qsnn_deploy.training.tune import SEARCH_SPACE, run_tune


def test_tiny_search_records_trials_and_seeds(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    run_tune("fmnist-int4", "s", storage=storage, trials=2, epochs_per_trial=1, limit_train=40, data="synthetic", timesteps=2)
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert len(trials) == 2
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and all(0.0 <= t.value <= 1.0 for t in done)
    assert sorted(t.user_attrs["seed"] for t in trials) == [0, 1]
    assert set(done[0].params) == {d.name for d in SEARCH_SPACE}

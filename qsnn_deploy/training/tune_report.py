"""What a study found: its best trials as data, the best parameters as a run config, and plots.

The plots are Optuna's own (``optuna.visualization.matplotlib``) on the Agg backend, so a
report renders on a machine with no display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qsnn_deploy.atomic import atomic_path
from qsnn_deploy.errors import QsnnError
from qsnn_deploy.training.run_config import RunConfig, write_run_config
from qsnn_deploy.training.tune_space import split_params

#: file names a report writes into its folder
CONFIG_NAME = "best_config.json"
PLOTS = {"history.png": "plot_optimization_history", "importances.png": "plot_param_importances", "slices.png": "plot_slice"}


def _trial_row(t: Any) -> dict[str, Any]:
    duration = t.duration.total_seconds() if t.duration is not None else None
    return {
        "number": t.number,
        "state": t.state.name,
        "value": t.value,
        "seed": t.user_attrs.get("seed"),
        "val_acc": t.user_attrs.get("val_acc"),
        "deployed_acc": t.user_attrs.get("deployed_acc"),
        "seconds": None if duration is None else round(duration, 1),
        "params": dict(t.params),
        "fail_reason": t.user_attrs.get("fail_reason"),
    }


def report_document(study: Any, top: int = 10) -> dict[str, Any]:
    """The study as data: settings, trial counts per state, the ``top`` best and the failed trials."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    complete.sort(key=lambda t: t.value, reverse=True)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return {
        "study": study.study_name,
        "settings": study.user_attrs.get("settings", {}),
        "states": states,
        "best": [_trial_row(t) for t in complete[:top]],
        "failed": [_trial_row(t) for t in trials if t.state == optuna.trial.TrialState.FAIL],
    }


def best_run_config(study: Any) -> RunConfig:
    """The best complete trial's parameters, with the study's fixed data set and time steps.

    The epochs are the preset's, not the trial's: a search ranks short runs, the final run trains in full.

    Raises:
        QsnnError: the study has no complete trial.
    """
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise QsnnError(f"study {study.study_name!r} has no complete trial yet; nothing to report")
    best = max(complete, key=lambda t: t.value)
    settings = study.user_attrs.get("settings", {})
    model, train = split_params(best.params)
    if settings.get("timesteps") is not None:
        model["timesteps"] = settings["timesteps"]
    if settings.get("data") is not None:
        train["dataset"] = settings["data"]
    if settings.get("precision", "fp32") != "fp32":  # the trials' precision: the config trains as they did
        train["precision"] = settings["precision"]
    source = {"study": study.study_name, "trial": best.number, "value": best.value, "seed": best.user_attrs.get("seed")}
    source.update({k: settings.get(k) for k in ("epochs_per_trial", "limit_train", "target")})
    return RunConfig(settings.get("preset"), model, train, source)


def write_plots(study: Any, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Save the PNG plots of :data:`PLOTS`; (written files, "name: why not" for each skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    written, skipped = [], []
    for name, function in PLOTS.items():
        plt.close("all")
        try:
            axes = getattr(ovm, function)(study)
        except (ValueError, RuntimeError) as exc:  # e.g. importances need two complete trials
            skipped.append(f"{name}: {exc}")
            continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
        with atomic_path(out_dir / name) as tmp:
            figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        written.append(out_dir / name)
    plt.close("all")
    return written, skipped


def write_report(study: Any, out_dir: str | Path, top: int = 10) -> dict[str, Any]:
    """Write the best config and the plots into ``out_dir``; the report document, with what was written."""
    import warnings

    import optuna

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = report_document(study, top)
    config_path = write_run_config(out / CONFIG_NAME, best_run_config(study))
    with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        plots, skipped = write_plots(study, out)
    doc.update(config=str(config_path), plots=[str(p) for p in plots], plots_skipped=skipped)
    return doc


__all__ = ["CONFIG_NAME", "PLOTS", "best_run_config", "report_document", "write_plots", "write_report"]

"""Training and evaluation engine: typed config, train loop, evaluation, run folders."""
from .config import ConfigError, TrainConfig
from .evaluation import evaluate, load_model, predict, predict_source
from .folds import train_folds
from .runs import list_runs, load_run
from .study import load_study, train_study
from .training import train

__all__ = ["TrainConfig", "ConfigError", "train", "evaluate", "predict", "predict_source", "load_model",
           "load_run", "list_runs", "train_folds", "load_study", "train_study"]

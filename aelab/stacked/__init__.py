"""Stacked autoencoders, UFLDL's recipe, as a composition of ordinary aelab runs:

    stage k: an autoencoder n_{k-1} -> n_k -> n_{k-1} trained on the codes of stage k-1
    features: a softmax trained on the last stage's codes (the frozen stacked features)
    finetune: the stacked encoders + that softmax, fine-tuned end to end with labels
    scratch: the same network from random initial weights, the same fine-tuning budget

Each is `aelab.trainer.train.train_and_evaluate` in its own sub-directory (configs.py derives
its config from the stacked one), so each resumes, is verified, and reads back with
`python -m aelab.inspect` like any run; driver.py runs them in order, report.py writes the
summary and plots.
"""

from aelab.stacked.driver import train_and_evaluate

__all__ = ['train_and_evaluate']

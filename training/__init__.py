"""Training for the fashion-zoo: data, the training loop, `train-all` and the reports."""

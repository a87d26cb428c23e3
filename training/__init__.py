"""roadseg training helpers: label schemes, hyperparameters, data preparation, evaluation, synthetic scenes."""

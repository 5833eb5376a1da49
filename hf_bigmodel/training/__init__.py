"""Training entry points shared by every architecture: pretraining and fine-tuning with `Trainer`."""

"""Training: the pix2pix step (eager or one CUDA graph), DDP, checkpoints, train/test CLIs."""

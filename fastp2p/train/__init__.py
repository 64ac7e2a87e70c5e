"""Training: the pix2pix step (eager or one CUDA graph), DDP, checkpoints, `fastp2p train`/`test`."""

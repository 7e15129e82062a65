"""Runtime: where and how a model runs (device, precision, threads) and batched inference."""

"""trainer: pre-training, fine-tuning and probing on fracbuild's shards (reads shards only)."""

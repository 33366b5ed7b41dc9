"""The input side of training: what ``--data`` and ``--dataset`` name, how shards are read, and the inputs
that turn them into batches.

    shards          reading shards: tar members -> samples, damaged shards and samples counted
    shardlists      what ``--data`` names (a dataset directory, a shard pattern, a URL) -> a ShardList
    inputs          the one input interface (create_train_input, create_eval_input) and its two kinds
    stream          the stream input's pipeline: shards through CPU loader workers (timm's transforms), any size
    memory          the memory input's held set: decoded once onto the training device, read pass by pass
    device_augment  the training augmentation on whole batches on the device (the memory input's)
    device_eval     the evaluation transform on the device, to timm's grey levels
    transforms      timm's training and evaluation transforms on PIL images (the stream input's)
    downstream      downstream datasets by SPEC (digits, mnist5k, folder:, wds:, torch/, hfds/, in100:, places30:)
"""

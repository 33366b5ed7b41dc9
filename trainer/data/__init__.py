"""The input side of training: what ``--data`` and ``--dataset`` name, how shards are read, and the inputs
that turn them into batches.

    shards          reading shards: tar members -> samples, damaged shards and samples counted
    shardlists      what ``--data`` names (a dataset directory, a shard pattern, a URL) -> a ShardList
    stream          the stream input: shards through CPU loader workers (timm's transforms), any size
    memory          the memory input: decoded once onto the training device, augmented there in batches
    device_augment  the training augmentation on whole batches on the device (the memory input's)
    transforms      timm's training and evaluation transforms on PIL images (the stream input's)
    downstream      downstream datasets by SPEC (digits, mnist5k, folder:, wds:, torch/)
"""

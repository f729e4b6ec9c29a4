"""Training loops (nothing here is imported by inference or the nodes).

StableSyncNet training (``latentsync train syncnet``, docs/training.md): ``syncnet_config`` reads upstream's yaml,
``syncnet_step`` / ``sync_loss`` compute one step, ``syncnet_loop`` runs it on DDP (torchrun, gloo or NCCL),
``run_files`` writes upstream-format checkpoints and resume files, ``cli`` is the command. The U-Net fine-tuning
loop (upstream's stage-2 losses, TREPA) goes here too, with its batches in ``latentsync.data``.
"""
